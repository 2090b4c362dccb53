"""Shims: make extensions that break under many interpreters load per interpreter (`interpkit patch`).

plan.py        PatchPlan / FilePlan / Edit: edits per file, contradictions rejected, dry-run text
strategies.py  finding -> edit or reason it cannot be fixed (hazards.py names the hazard of a finding)
relink.py      byte patches of symbol bindings (GNU_UNIQUE -> weak, clashing exports hidden) and
               LIEF edits of DT_NEEDED libpython, DT_RUNPATH, DT_SONAME
copies.py      import hook giving each interpreter a private relinked copy of an extension
rebuild.py     rebuild a source tree or sdist with -fno-gnu-unique -fvisibility=hidden -ftls-model=global-dynamic
wheel.py       repair a wheel: patched members, RECORD rewritten, same name and tags
apply.py       copy -> patch in a staging dir -> re-scan -> re-verify -> atomic rename; input hashed
guard.py       the namespaces runtime's RTLD_GLOBAL guard (interpkit.native.guard), exposed
"""
