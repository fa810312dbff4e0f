"""Native code of a process: ELF files (symbols, sections, build ids), address spaces, call frame info.

Shared by the V8 layout reader (:mod:`nodeflame.capture.v8layout`), the user-space walker
(:mod:`nodeflame.capture.walker`) and the SystemTap backend (:mod:`nodeflame.capture.stap`), none of
which owns it: :mod:`.elf` reads ELF files with pyelftools and numpy, :mod:`.symbols` maps a live
process's addresses to modules and symbols (and names kernel addresses from /proc/kallsyms), and
:mod:`.cfi` finds frame rules in ``.eh_frame`` for frameless native code.
"""
