"""Lines the CLI renders from library results."""

from __future__ import annotations

from autoprune.search.pareto import UniformLead
from autoprune_cli.render import uniform_lead_line


def test_the_uniform_lead_line_says_noise_beyond_noise_or_no_better() -> None:
    line = uniform_lead_line(UniformLead(7, 0.862, 0, 0.850, val_images=6000))
    assert line.startswith("best trial 7 leads uniform pruning at the same budget (trial 0)")
    assert "+1.20 pt" in line and "6,000 images are 1.28 pt: within noise" in line
    assert "(one fine-tune each)" in line
    beyond = uniform_lead_line(UniformLead(7, 0.88, 0, 0.85, val_images=6000))
    assert beyond.endswith("rerun the search with --confirm 2 before trusting it")
    # confirmed: means of fresh seeds, whose spread widens the noise
    confirmed = UniformLead(7, 0.88, 0, 0.85, val_images=6000, rescored=2, seed_variance=1e-4)
    assert confirmed.noise > beyond_noise(6000)
    line = uniform_lead_line(confirmed)
    assert "(means of 2 fresh fine-tunes each)" in line
    assert "6,000 images and the fresh seeds" in line
    assert line.endswith("beyond noise; export it with autoprune export --trial 7")
    noisy = UniformLead(7, 0.88, 0, 0.85, val_images=6000, rescored=2, seed_variance=4e-4)
    assert uniform_lead_line(noisy).endswith("within noise")
    tie = uniform_lead_line(UniformLead(3, 0.85, 0, 0.85, val_images=6000))
    assert tie.startswith("no trial beats uniform pruning at the same budget (trial 0, 85.00 %")
    old = uniform_lead_line(UniformLead(7, 0.88, 0, 0.85, val_images=None))
    assert old.endswith("(the study did not record its validation images: no noise estimate)")


def beyond_noise(images: int) -> float:
    """Two standard errors of a difference of two accuracies near 86.5 % on ``images``."""
    return UniformLead(7, 0.88, 0, 0.85, val_images=images).noise
