"""Batch embedding of whole screens on Dask (see ``docs/scaling.md``).

Layout
------
(inputs: :func:`cellseek.io.inputs.collect_inputs`, folder, plate export, list file or glob ->
image paths.)

shards.py
    One ``.npz`` shard per image (cells, float16 embeddings, label images, thumbnails), keyed by
    the image's content hash and the model-set signature, written atomically.
tasks.py
    :func:`~cellseek.batch.tasks.process_image`: the pure per-image function run on a worker.
merge.py
    :func:`~cellseek.batch.merge.merge_shards`: shards -> reference store in one transaction.
runner.py
    :func:`~cellseek.batch.runner.embed_many`, :func:`~cellseek.batch.runner.suggest_many`,
    :func:`~cellseek.batch.runner.bench_workers`.

Nothing here imports ``dask.distributed`` at module level.
"""
