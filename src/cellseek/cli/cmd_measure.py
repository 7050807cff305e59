"""The measuring commands: ``evaluate`` and ``bench``."""

from __future__ import annotations

import json
from pathlib import Path

from cellseek.cli.options import config_from_args
from cellseek.cli.progress import run_with_progress
from cellseek.text import cells_text


def cmd_evaluate(args) -> int:
    from cellseek.measure.evaluate import evaluate, format_table
    from cellseek.pipeline import resolve_models

    cfg = config_from_args(args)
    models = resolve_models(cfg)
    result = run_with_progress(
        evaluate(args.reference, args.query, models=models, folds=args.folds, config=cfg,
                 run_ablations=not args.no_ablations, peers=not args.no_peers),
        quiet=args.quiet,
    )
    print(format_table(result))
    if args.reliability:
        from cellseek.measure.calibration import plot_reliability

        title = f"{result['mode']}: {Path(args.reference).stem}" + (
            f" -> {Path(args.query).stem}" if args.query else "")
        plot_reliability({title: result["reliability"]}, args.reliability,
                         threshold=cfg.suggest.threshold)
        print(f"reliability diagram -> {args.reliability}")
    if args.fields:
        from cellseek.measure.evaluate import load_eval_set
        from cellseek.measure.fields import evaluate_fields

        data = run_with_progress(load_eval_set(args.reference, models, cfg), quiet=args.quiet)
        f = run_with_progress(evaluate_fields(args.fields, data, config=cfg), quiet=args.quiet)
        result["fields"] = f
        print(f"whole fields ({f['n_fields']}): detection recall {100 * f['recall']:.1f} %, "
              f"precision {100 * f['precision']:.1f} %, mean IoU {f['mean_iou']:.2f} "
              f"at IoU >= {f['iou_threshold']}")
        if "type_macro_accuracy" in f:
            print(f"suggested type of the {f['n_typed']} detected typed cells "
                  f"(alignment {f['align']}): macro accuracy "
                  f"{100 * f['type_macro_accuracy']:.1f} %  " + ", ".join(
                      f"{c} {100 * r:.0f} %" for c, r in f["type_per_class_recall"].items()))
    if args.growth:
        from cellseek.measure.evaluate import load_eval_set
        from cellseek.measure.growth import plot_growth, simulate_growth

        data = run_with_progress(load_eval_set(args.reference, models, cfg), quiet=args.quiet)
        result["growth"] = run_with_progress(simulate_growth(data, config=cfg), quiet=args.quiet)
        plot_growth(result["growth"], args.growth)
        for c in result["growth"]["curves"]:
            print(f"growth: start {c['start_per_class']}/class, {c['order']:<12}: "
                  f"{100 * c['macro_accuracy'][0]:.1f} % at {cells_text(c['n_labelled'][0])} -> "
                  f"{100 * c['macro_accuracy'][-1]:.1f} % at {cells_text(c['n_labelled'][-1])}")
        print(f"growth plot -> {args.growth}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"JSON -> {args.json}")
    return 0


def cmd_bench(args) -> int:
    result = _run_bench(args)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
        print(f"JSON -> {args.json}")
    return 0


def _run_bench(args):
    """Run the benchmark ``args`` ask for, print it, return what ``--json`` writes."""
    if args.merge:
        from cellseek.measure.bench_merge import bench_merge, format_merge

        result = bench_merge(n_cells=args.cells)
        print(format_merge(result))
        return result
    if args.saved_index:
        from cellseek.measure.bench_saved_index import format_result, run

        result = run(args.cells, args.dim)
        print(format_result(result))
        return result
    if args.index:
        from cellseek.measure.bench_index import main_args

        return main_args(sizes=args.sizes, dim=args.dim, n_queries=args.queries)
    from cellseek.measure.bench import bench_sam_click, format_results, run_benchmarks

    cfg = config_from_args(args)
    if args.sam_click:
        results = bench_sam_click(weights_dir=cfg.embed.weights_dir)
    else:
        results = run_benchmarks(cfg, n_crops=args.crops, n_reference=args.references,
                                 n_queries=args.queries, random_weights=args.random_weights)
    print(format_results(results))
    return results
