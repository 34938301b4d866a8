"""Only the optional compiled inner loop; everything else is in pyproject.toml.

``optional=True``: without a working C compiler (none on PATH, or ``CC=false``) the build
skips the extension with a warning and minitalk runs its pure-Python loops (transport.py).
"""

from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "minitalk._inner",
            sources=["minitalk/_inner.c"],
            optional=True,
            extra_compile_args=["-O2", "-std=c99", "-D_GNU_SOURCE"],
        )
    ]
)
