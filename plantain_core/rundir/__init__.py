"""A run folder on disk: its layout and locks (``folder``), the manifest's checks
(``manifest``) and atomic writes (``fsutil``).

May import: ``errors`` only. Everything that writes a run folder imports it.
"""
