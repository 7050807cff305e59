"""LabelLookup stays equal to the label dictionary it mirrors through adds, relabels, drops."""

import numpy as np

from cellseek.search.label_lookup import LabelLookup


def _expected_codes(labels, ids, classes):
    return np.array([classes.index(labels[i]) if i in labels and labels[i] in classes else -1
                     for i in ids], np.int64)


def test_lookup_follows_random_changes():
    rng = np.random.default_rng(0)
    names = [f"c{i}" for i in range(6)]
    labels = {int(i): names[rng.integers(3)] for i in rng.choice(1000, 200, replace=False)}
    lookup = LabelLookup(labels)
    for step in range(60):
        action = step % 3
        if action == 0:  # add new cells and relabel known ones, with a repeated id
            ids = [int(i) for i in rng.integers(0, 1200, 15)] + [7, 7]
            labs = [names[rng.integers(6)] for _ in ids]
            lookup.set(ids, labs)
            labels.update(zip(ids, labs))
        elif action == 1:  # drop some known and some unknown ids
            ids = [int(i) for i in rng.integers(0, 1300, 20)]
            lookup.drop(ids)
            for i in ids:
                labels.pop(i, None)
        counts = {}
        for lab in labels.values():
            counts[lab] = counts.get(lab, 0) + 1
        assert lookup.class_counts() == dict(sorted(counts.items()))
        assert len(lookup) == len(labels)
        assert np.all(np.diff(lookup.keys) > 0)
        query = rng.integers(0, 1300, 50)
        classes = sorted(counts)[::-1] + ["unknown"]
        np.testing.assert_array_equal(lookup.codes_of(query, classes),
                                      _expected_codes(labels, query.tolist(), classes))


def test_empty_lookup():
    lookup = LabelLookup({})
    assert lookup.class_counts() == {}
    np.testing.assert_array_equal(lookup.codes_of(np.array([1, 2]), ["a"]), [-1, -1])
    lookup.set([5], ["a"])
    assert lookup.class_counts() == {"a": 1}
    np.testing.assert_array_equal(lookup.codes_of(np.array([5, 2]), ["b", "a"]), [1, -1])
    lookup.drop([5])
    assert lookup.class_counts() == {}
