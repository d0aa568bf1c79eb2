# cni-py's replacement for PyInstaller's pyiboot01_bootstrap (see build/freeze.py).
# The stock bootstrap imports os, unpacks and runs pyimod01..03 (PYZ importer, ctypes hooks)
# and lists _internal at every start: ~5 ms per call. In our noarchive bundle the PYZ is
# empty (freeze.py checks) and every module is a .pyc file under _internal, which is on
# sys.path and which Python's own path finder loads; ctypes is excluded. What is left to do:
import sys

sys.frozen = True
del sys._pyinstaller_pyz  # set by the bootloader for PyInstaller's PYZ importer; unused here
