"""Build the namespaces runtime extension; everything else is in pyproject.toml.

Only PyInit__interpkit is exported (-fvisibility=hidden): the ik_* functions are internal
to the extension, and exported helpers would be what our own IK303 rule flags.
"""
from setuptools import Extension, setup

setup(
    ext_modules=[
        Extension(
            "native._interpkit",
            sources=["native/_interpkit.c", "native/runtime.c"],
            include_dirs=["native/include"],
            define_macros=[("_GNU_SOURCE", None)],
            libraries=["dl", "pthread"],
            extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra",
                                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                                "-Wno-cast-function-type"],
        )
    ]
)
