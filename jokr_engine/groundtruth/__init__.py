"""A ground-truth retargeting benchmark: procedural quadruped clip pairs for which "B's look in A's pose"
is known exactly, and scores of a trained job against it (docs/QUALITY.md, "Ground-truth benchmark").

Modules: `animal` (skeleton, looks, gaits, drawing), `pairs` (the pairs, where the truth is placed,
writing and reading), `score` (metrics, ceiling, baselines), `report` (report.md, scores.json, picture),
`run` (the score and run commands), `command` (the command-line options). Importing this package imports
nothing heavy.
"""
