"""Readers of every input format, one module each.  Importing this package imports none of them:
``nodeflame.frames.formats`` imports a format's module (which registers its reader) when the format is
first needed (``formats.READER_MODULES``), so reading folded stacks loads no other reader."""
