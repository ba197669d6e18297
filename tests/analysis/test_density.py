"""``density``'s numbers: the dip test's verdict on hand-built samples, equal to the library called directly."""

from __future__ import annotations

import diptest
import numpy as np
from scipy.stats import mannwhitneyu

from cluster_workers.analysis.density import density, dip_test, log_core


def test_the_dip_test_tells_two_densities_from_one():
    rng = np.random.default_rng(0)
    bimodal = np.r_[10 ** rng.normal(-2.0, 0.15, 3000), 10 ** rng.normal(-0.5, 0.15, 3000)]  # dense cores, a diffuse sea
    unimodal = 10 ** rng.normal(-1.0, 0.3, 6000)
    two, one = dip_test(log_core(bimodal)), dip_test(log_core(unimodal))
    assert two.p_value < 0.01 < 0.05 < one.p_value and two.statistic > one.statistic
    assert "rejected" in two.verdict and "one mode" in one.verdict
    for core, got in ((bimodal, two), (unimodal, one)):  # the library, called directly on the same values
        statistic, p_value = diptest.diptest(np.log10(core))
        assert (got.statistic, got.p_value) == (statistic, p_value)


def test_deciles_and_caption_lengths():
    rng = np.random.default_rng(1)
    core = rng.uniform(0.1, 1.0, 2000)
    labels = np.where(core > 0.8, -1, 0)  # the sparsest fifth are the outliers
    texts = np.array(["word " * int(3 + 10 * c) for c in core], dtype=object)  # sparser: longer captions
    models = np.array(["A", "B"] * 1000, dtype=object)
    d = density(core, labels, 5, texts, models)
    shares = [r["outlier_share"] for r in d.deciles]
    assert shares[:7] == [0.0] * 7 and shares[-1] == 1.0 and sum(r["points"] for r in d.deciles) == 2000
    assert d.quantiles["q50"] == np.quantile(core, 0.5) and sum(d.histogram["counts"]) == 2000
    words = next(t for t in d.lengths if t.text_model == "A" and t.unit == "words")
    mine = models == "A"
    u, p = mannwhitneyu(
        [len(t.split()) for t in texts[mine & (labels < 0)]], [len(t.split()) for t in texts[mine & (labels >= 0)]]
    )
    assert (words.u_statistic, words.p_value) == (u, p) and words.rank_biserial > 0.9 and words.p_value < 1e-10
