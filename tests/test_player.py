"""The viewers' play button (explorer/widgets/player.py). That it plays in a browser, also when
one viewer is displayed twice, is checked in tests/test_browser.py; here, its Python side."""
import pytest
import torch
import traitlets

import explorer
from explorer import samplers, widgets
from explorer.widgets.player import Player


def test_player_refuses_a_stride_or_interval_below_one_and_max_below_min():
    p = Player(min=2, max=5, value=2)
    for trait in ("step", "interval"):
        with pytest.raises(traitlets.TraitError, match=f"{trait} must be >= 1"):
            setattr(p, trait, 0)
    with pytest.raises(traitlets.TraitError, match="below min=2"):
        p.max = 1


def test_viewers_play_with_the_player_over_their_steps():
    probs = torch.rand(16, 9, generator=torch.Generator().manual_seed(0)) ** 4
    probs[:, -1] = 0
    model = explorer.StubDenoiser(probs)
    a, b = (explorer.generate(model, s, 6, seed=0, progress=False) for s in (samplers.MDLM(), samplers.ReMDMCap(eta=0.3)))
    v = widgets.TraceViewer(a)
    assert isinstance(v.play, Player) and (v.play.min, v.play.max) == (v.slider.min, v.slider.max)
    v.speed.value = "250 steps/s"
    assert (v.play.interval, v.play.step) == (20, 5)
    c = widgets.CompareViewer([a, b])
    assert isinstance(c.play, Player) and (c.play.min, c.play.max) == (c.slider.min, c.slider.max)
