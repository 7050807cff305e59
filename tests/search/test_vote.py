import numpy as np
import pytest

from cellseek.config import SuggestConfig
from cellseek.search.vote import adaptive_k, review_queue, suggest_from_neighbours, vote_matrix


def test_adaptive_k_grows_and_is_bounded_by_smallest_class():
    cfg = SuggestConfig(k_min=1, k_max=15)
    assert adaptive_k({}, cfg) == 0
    assert adaptive_k({"a": 4, "b": 5}, cfg) == 3
    assert adaptive_k({"a": 100, "b": 100}, cfg) == 14
    assert adaptive_k({"a": 1000, "b": 1000}, cfg) == 15
    assert adaptive_k({"a": 1000, "b": 2}, cfg) == 2
    default = SuggestConfig()  # k_min = 3: one cell per class still gives graded confidences
    assert adaptive_k({"a": 1, "b": 1, "c": 1}, default) == 3
    assert adaptive_k({"a": 1}, default) == 1  # never more than there are cells


def test_similarity_weighted_vote():
    sims = np.array([[0.9, 0.5, 0.5, 0.5]])
    codes = np.array([[0, 1, 1, 1]])
    assert vote_matrix(sims, codes, 2, temperature=100)[0].argmax() == 1  # majority
    assert vote_matrix(sims, codes, 2, temperature=0.05)[0].argmax() == 0  # nearest dominates
    np.testing.assert_allclose(vote_matrix(sims, codes, 2, 0.1).sum(), 1.0)


def test_suggestions_confidence_threshold_and_neighbours():
    sims = np.array([[0.9, 0.89, 0.1], [0.9, 0.9, 0.9]])
    ids = np.array([[1, 2, 3], [1, 2, 3]])
    labels = {1: "a", 2: "a", 3: "b"}
    out = suggest_from_neighbours(sims, ids, labels, SuggestConfig(threshold=0.6, temperature=1))
    assert out[0].label == "a" and out[0].confidence > 0.6
    assert out[1].label == "a" and out[1].confidence == pytest.approx(2 / 3)
    strict = suggest_from_neighbours(sims, ids, labels, SuggestConfig(threshold=0.9, temperature=1))
    assert strict[1].label is None and strict[1].best_label == "a" and strict[1].uncertain
    assert [n.cell_id for n in out[0].neighbours] == [1, 2, 3]
    assert out[0].entropy < out[1].entropy


def test_missing_neighbours_and_unlabelled_ids_are_ignored():
    out = suggest_from_neighbours(np.array([[0.5, -np.inf]]), np.array([[9, -1]]), {1: "a"})
    assert out[0].label is None and out[0].confidence == 0


def test_review_queue_puts_uncertain_first():
    sims = np.array([[0.9, 0.9], [0.9, 0.1], [0.9, 0.9]])
    ids = np.array([[1, 2], [1, 2], [1, 1]])
    out = suggest_from_neighbours(sims, ids, {1: "a", 2: "b"}, SuggestConfig(temperature=1))
    order = review_queue(out)
    assert order[0] == 0 and list(order[1:]) == [1, 2]
