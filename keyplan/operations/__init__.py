"""Operations: what keyplan does for a command, with nothing of the terminal in it (like
Terraform's `backend/local` operations).

Each operation runs one sequence end to end: load the configuration, take the state lock, read
the state, plan, ask the caller to approve, walk the plan, commit the state. The command line
(`keyplan.cli`) only parses flags, calls an operation and renders what it returns; anything
interactive (showing a plan, asking for confirmation, progress lines) reaches an operation as a
callback. Operations raise `DiagnosticsError` for user errors and never choose exit codes.

- `workspace`: the configuration directory, its configuration, state backend and lock;
- `plan`: plan and drift;
- `apply`: apply a fresh plan (`apply`) or a saved one exactly (`apply_saved`);
- `state`: reading and deliberately editing the state (list, show, rm, mv, pull, push, unlock);
- `adoption`: `keyplan import` and `keyplan discover`;
- `transfer`: the one import sequence (fetch import parameters, wrap in the source, import);
- `wrapping`: the wrapping keys a plan's imports will use (for sources that must trust them);
- `audit`: the audit trail, kept by the state backend (appending for a command, reading for `log`).
"""
