"""v8layout: v8dbg_* constants read from real node binaries (system node + cached official builds)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

from nodeflame.capture import v8layout
from nodeflame.capture.v8layout import LayoutError, load_layout

from walker_helpers import MAJORS, NODE_PATHS, node_for


def _node_eval(node, expr):
    return subprocess.run([node, "-p", expr], capture_output=True, text=True, timeout=60).stdout.strip()


@pytest.fixture(autouse=True)
def _private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    v8layout._mem_cache.clear()
    yield
    v8layout._mem_cache.clear()


@pytest.mark.parametrize("major", MAJORS, ids=[f"node{m}" for m in MAJORS])
def test_versions_and_basic_constants(major):
    node = node_for(major)
    lay = load_layout(node)
    assert lay.v8_version == _node_eval(node, "process.versions.v8")
    assert lay.node_version == _node_eval(node, "process.version")
    assert len(lay.consts) > 400
    # the zero-valued constants live in .bss and must read as 0, not be missing
    for z in ("SmiTag", "class_HeapObject__map__Map", "SeqStringTag", "TwoByteStringTag"):
        assert lay[z] == 0, z
    assert lay["HeapObjectTag"] == 1 and lay["SmiShiftSize"] == 31 and lay["TaggedSize"] == 8
    assert lay["off_fp_function"] == -16 and lay["off_fp_context_or_frame_type"] == -8
    assert lay["frametype_EntryFrame"] == 1 and lay["frametype_ExitFrame"] == 3
    assert lay.field("JSFunction", "shared") in (24, 32)
    assert lay.type("JSFunction", "JS_FUNCTION_TYPE") > 2000
    assert lay.smi_shift == 32
    lay.check_supported()  # every version present here is in the facts table


def test_system_node_matches_the_investigation_table():
    node = shutil.which("node")
    if not node:
        pytest.skip("node not installed")
    lay = load_layout(os.path.realpath(node))
    if not lay.v8_version.startswith("11.3."):
        pytest.skip(f"system node has V8 {lay.v8_version}, the table is for 11.3")
    expect = {
        "off_fp_bytecode_array": -32, "off_fp_bytecode_offset": -40, "frametype_InterpretedFrame": 13,
        "frametype_BaselineFrame": 14, "frametype_TurbofanFrame": 16, "frametype_InternalFrame": 22,
        "frametype_ConstructFrame": 23, "frametype_BuiltinExitFrame": 25,
        "class_SharedFunctionInfo__name_or_scope_info__Object": 16,
        "class_SharedFunctionInfo__script_or_debug_info__HeapObject": 32,
        "class_Script__name__Object": 16, "class_Script__source__Object": 8,
        "class_String__length__int32_t": 12, "class_Map__instance_type__uint16_t": 12,
        "type_SharedFunctionInfo__SHARED_FUNCTION_INFO_TYPE": 262, "type_ScopeInfo__SCOPE_INFO_TYPE": 261,
        "type_Script__SCRIPT_TYPE": 167, "class_BytecodeArray__data__uintptr_t": 54,
        "InterpreterBytecodeOffsetRegister": 9, "FirstNonstringType": 128, "OneByteStringTag": 8,
    }
    for k, v in expect.items():
        assert lay[k] == v, k
    zeros = [k for k, v in lay.consts.items() if v == 0]
    assert len(zeros) == 112  # exactly the .bss ones
    assert len(lay.consts) == 531


def test_cache_by_build_id(tmp_path):
    node = NODE_PATHS[0] if NODE_PATHS else pytest.skip("no node")
    lay = load_layout(node)
    f = tmp_path / "cache" / "nodeflame" / "v8layout" / f"{lay.build_id}.json"
    assert f.exists()
    d = json.loads(f.read_text())
    assert d["consts"] == lay.consts and d["v8_version"] == lay.v8_version
    # a second process-level load comes from the disk cache and is identical
    v8layout._mem_cache.clear()
    d["consts"]["SmiShiftSize"] = 31  # unchanged value, file still valid
    lay2 = load_layout(node)
    assert lay2.consts == lay.consts and lay2.build_id == lay.build_id


def test_unknown_version_is_a_clear_error(monkeypatch):
    node = NODE_PATHS[0] if NODE_PATHS else pytest.skip("no node")
    lay = load_layout(node)
    monkeypatch.setattr(v8layout, "VERSION_FACTS", {})
    v8layout._mem_cache.clear()
    lay = load_layout(node)
    with pytest.raises(LayoutError) as e:
        lay.check_supported()
    assert lay.v8_version in str(e.value) and "not in" in str(e.value)


def test_missing_symbol_names_it():
    node = NODE_PATHS[0] if NODE_PATHS else pytest.skip("no node")
    lay = load_layout(node)
    with pytest.raises(LayoutError, match="v8dbg_class_NoSuch__thing"):
        lay.field("NoSuch", "thing")


def test_binary_without_metadata():
    ls = shutil.which("ls")
    with pytest.raises(LayoutError, match="no v8dbg_"):
        load_layout(os.path.realpath(ls))


def test_layout_for_pid_reads_proc_exe():
    node = NODE_PATHS[0] if NODE_PATHS else pytest.skip("no node")
    p = subprocess.Popen([node, "-e", "setTimeout(()=>{}, 20000)"])
    try:
        lay = v8layout.layout_for_pid(p.pid)
        assert lay.path == os.path.realpath(node)
        assert lay.v8_version == _node_eval(node, "process.versions.v8")
    finally:
        p.kill()
        p.wait()
    with pytest.raises(LayoutError, match="no process"):
        v8layout.layout_for_pid(2 ** 22 + 12345)
