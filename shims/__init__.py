"""Shims: make extensions that break under many interpreters load per interpreter (`interpkit patch`).

Imports run one way (a test in tests/architecture checks it): apply -> rebuild -> wheel -> tree
-> strategies -> plan/relink/hazards; none of them imports apply.

plan.py        PatchPlan / FilePlan / Edit: edits per file, contradictions rejected, dry-run text
hazards.py     the hazard a finding names (by rule name and the finding's data, never its message)
strategies.py  finding -> Decision: edits, or the reason it cannot be fixed
relink.py      byte patches of symbol bindings (GNU_UNIQUE -> weak, clashing exports hidden) and
               LIEF edits of DT_NEEDED libpython, DT_RUNPATH, DT_SONAME
copies.py      import hook giving each interpreter a private relinked copy of an extension
tree.py        patch one staged tree: plan, apply, re-scan, re-verify, check a second pass is empty
wheel.py       repair a wheel: patched members, RECORD rewritten, same name and tags
rebuild.py     rebuild a source tree or sdist with -fno-gnu-unique -fvisibility=hidden -ftls-model=global-dynamic
apply.py       one input: copy -> patch in a staging dir -> atomic rename; input hashed before and after

The RTLD_GLOBAL guard is the namespaces runtime's own (interpkit.native.guest.guard); the shims only
report RTLD_GLOBAL findings as handled there.
"""
