"""Benchmarks of the landscape library against its anchors, run as one command.

    python -m benchmarks [--quick | --smoke] [--only NAME ...]

1. ``surface``  — 2D loss-surface throughput vs loss-landscapes 3.0.6 ``random_plane``.
2. ``eigen``    — top Hessian eigenvalue to 1e-3: HVPs and time vs power iteration with
   PyHessian's defaults and hessian-eigenthings ``lanczos``.
3. ``training`` — ResNet-20 epoch time vs a torchvision ``DataLoader`` loop.
4. ``hvp``      — cost of one Hessian-vector product over one gradient.
5. ``pipeline`` — per-stage wall time of the report's pipeline, from Snakemake's logs
   (``pipeline_times.py``).

Both sides of every comparison run in one process, interleaved and repeated; the table reports
per-repeat ratios (min / median / max). ``bench_probes_vs_anchors.py`` is the accuracy companion
(errors against exact answers); ``--with-anchors`` adds its table to the results.
"""
