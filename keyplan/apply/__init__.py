"""Apply: carry out a plan's action graph against the key sources and the clouds.

- `walker` puts the pieces together and is what the CLI calls (`Walker(plan, ...).run()`,
  `accept_live` for refresh-only plans);
- `scheduler` runs a dependency graph in parallel, as soon as each node's dependencies have
  succeeded, skipping only what depends on a failure (generic: it knows no keys);
- `handlers` holds one handler per action kind, in a table keyed by the kind;
- `calls` is the one door for plugin calls: admission per provider, retries, answer checks;
- `retry` says when a failed call is tried again; `hooks` are the listeners (progress, audit);
- `committer` writes each completed mutation to state (journalled, group-committed);
- `audit` records every remote mutation in `.keyplan/audit.jsonl`.
"""
