"""Planning: from desired keys, state and the clouds' live inventories to a reviewable plan.

- `planner.make_plan` refreshes (one bulk inventory per target), diffs and builds the graph;
- `diff` decides per key and target what changes and why, and what drifted (pure);
- `negotiate` picks the wrap method a source can perform and a target accepts;
- `graph` turns the diff's work into actions (one typed model per kind, `model.Action`) and
  their dependencies, on networkx;
- `model` is the plan as data (changes, drift, actions, key specs), saved by `planfile` with a
  content digest and checked for staleness before apply; `render` shows it as text, JSON or
  Markdown.
"""
