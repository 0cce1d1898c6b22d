"""An example third-party plantain plugin.

It ships one spec-only probe (``warmth``) through the ``plantain_spec_dirs`` hook. The
entry point in this package's pyproject.toml (group ``plantain``) is all plantain needs
to find it once the package is installed.
"""

import pathlib

from plantain_core import hookimpl


@hookimpl
def plantain_spec_dirs():
    return [pathlib.Path(__file__).parent / "specs"]
