"""Build the namespaces runtime extension and map the one import name onto the folders.

Only PyInit__interpkit is exported (-fvisibility=hidden): the ik_* functions are internal
to the extension, and exported helpers would be what our own IK303 rule flags.

Packages: `interpkit` is interpkit/, `interpkit.analyzer` is analyzer/, `interpkit.native`
is native/, `interpkit.shims` is shims/ (package-dir in pyproject.toml); every subpackage
found in those folders is installed under that name, and nothing else at top level.
"""
from setuptools import Extension, find_packages, setup

FOLDERS = {"interpkit": "interpkit", "interpkit.analyzer": "analyzer", "interpkit.native": "native",
           "interpkit.shims": "shims"}


def packages() -> list[str]:
    names = []
    for package, folder in FOLDERS.items():
        names.append(package)
        names.extend(f"{package}.{sub}" for sub in find_packages(folder)
                     if not f"{package}.{sub}".startswith(tuple(n + "." for n in FOLDERS if n != package and n.startswith(package + "."))))
    return sorted(set(names))


setup(
    packages=packages(),
    ext_modules=[
        Extension(
            "interpkit.native._interpkit",
            sources=["native/_interpkit.c", "native/runtime.c"],
            include_dirs=["native/include"],
            define_macros=[("_GNU_SOURCE", None)],
            libraries=["dl", "pthread"],
            extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra",
                                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                                "-Wno-cast-function-type"],
        ),
        # The copies runtime (native/copies.c): one interpreter per renamed libpython copy.
        Extension(
            "interpkit.native._copies",
            sources=["native/copies.c"],
            define_macros=[("_GNU_SOURCE", None)],
            libraries=["dl", "pthread"],
            extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra",
                                "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                                "-Wno-cast-function-type"],
        ),
    ]
)
