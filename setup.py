"""Only for the compiled part: project metadata lives in pyproject.toml.

``python setup.py build_ext --inplace`` (run by make's install step) builds the
nearby-search kernel, app/discovery/_nearby*.so, with cffi (app/discovery/kernel_build.py).
"""

from setuptools import setup

setup(cffi_modules=["app/discovery/kernel_build.py:ffibuilder"])
