"""Build the runtimes' C extensions and map the one import name onto the folders.

Each extension exports only its PyInit_* (-fvisibility=hidden): the ik_* functions, the shared
worker core's included, are internal to each extension, and exported helpers would be what
our own IK303 rule flags.

Packages: `interpkit` is interpkit/, `interpkit.analyzer` is analyzer/, `interpkit.native`
is native/, `interpkit.serve` is serve/, `interpkit.shims` is shims/ (package-dir in pyproject.toml); every subpackage
found in those folders is installed under that name, and nothing else at top level.
"""
from setuptools import Extension, find_packages, setup

FOLDERS = {"interpkit": "interpkit", "interpkit.analyzer": "analyzer", "interpkit.native": "native",
           "interpkit.serve": "serve", "interpkit.shims": "shims"}


def packages() -> list[str]:
    names = []
    for package, folder in FOLDERS.items():
        names.append(package)
        names.extend(f"{package}.{sub}" for sub in find_packages(folder)
                     if not f"{package}.{sub}".startswith(tuple(n + "." for n in FOLDERS if n != package and n.startswith(package + "."))))
    return sorted(set(names))


# The worker core (threads, mailbox, interrupt, interpreter init, finalize or retire) and the
# bindings' shared NativeError/constants: written once, compiled into each runtime's extension.
CORE = ["native/core/worker.c", "native/core/binding.c"]


def runtime_extension(name: str, sources: list[str], include_dirs: list[str] = ()) -> Extension:
    return Extension(
        name,
        sources=[*sources, *CORE],
        include_dirs=["native/core", *include_dirs],
        define_macros=[("_GNU_SOURCE", None)],
        libraries=["dl", "pthread"],
        extra_compile_args=["-std=gnu11", "-fvisibility=hidden", "-Wall", "-Wextra",
                            "-Wno-unused-parameter", "-Wno-missing-field-initializers",
                            "-Wno-cast-function-type"],
    )


setup(
    packages=packages(),
    ext_modules=[
        # The namespaces runtime: one dlmopen namespace per interpreter.
        runtime_extension("interpkit.native._interpkit",
                          ["native/namespaces/_interpkit.c", "native/namespaces/runtime.c"],
                          ["native/namespaces/include"]),
        # The copies runtime: one interpreter per renamed libpython copy.
        runtime_extension("interpkit.native._copies", ["native/copies/_copies.c"]),
    ]
)
