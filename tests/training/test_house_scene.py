"""Scene generator, captions and pixel rules of the house model."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from training.house.captions import caption, held_out_prompts, is_held_out, vocabulary
from training.house.evaluate import seam_energy, ssim
from training.house.rules import adherence, horizon_row, read_attributes
from training.house.scene import GROUPS, random_scene, render_scene, valid


def test_deterministic_and_sized():
    a, ta = random_scene(3, 192, 128)
    b, tb = random_scene(3, 192, 128)
    assert a.shape == (128, 192, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and ta.attrs == tb.attrs and ta.horizon == tb.horizon
    assert not np.array_equal(a, random_scene(4, 192, 128)[0])


def test_groups_and_vocabulary():
    assert len(GROUPS) >= 6
    assert len(vocabulary()) >= 30


def test_layout_varies_and_masks_consistent():
    horizons = {random_scene(s)[1].horizon for s in range(40)}
    assert len(horizons) >= 10
    img, truth = random_scene(11)
    assert set(truth.masks) >= {"sky", "water", "vegetation", "object"}
    assert not (truth.masks["sky"][truth.horizon:]).any()


def test_captions_vary_and_name_attributes():
    rng = np.random.default_rng(0)
    attrs = {"time": "night", "sky": "moon", "terrain": "dunes", "water": "lake", "vegetation": "palms",
             "object": "house", "colour": "red"}
    assert valid(attrs)
    texts = {caption(attrs, rng) for _ in range(20)}
    assert len(texts) >= 5
    assert all("red" in t for t in texts)


def test_held_out_never_trained():
    cases = held_out_prompts(10)
    assert all(is_held_out(a) for a, _ in cases)
    assert 0.05 < np.mean([is_held_out(random_scene(s)[1].attrs) for s in range(200)]) < 0.25


def test_rules_read_ground_truth():
    hits, hz = {}, []
    for s in range(60):
        img, truth = random_scene(s)
        hz.append(abs(horizon_row(img) - truth.horizon) <= 4)
        for g, ok in adherence(truth.attrs, read_attributes(img)).items():
            hits.setdefault(g, []).append(ok)
    acc = {g: np.mean(v) for g, v in hits.items()}
    # The rules are the adherence judge: on the generator's own renders they must read nearly all.
    assert min(acc.values()) >= 0.9, acc
    assert np.mean(hz) > 0.6


def test_rules_read_night_colours():
    """At night every lit surface is a third as bright; the rules undo the light before comparing."""
    for colour in ("red", "blue", "yellow", "black"):
        attrs = {"time": "night", "sky": "stars", "terrain": "hills", "water": "none", "vegetation": "none",
                 "object": "house", "colour": colour}
        img, _ = render_scene(attrs, 128, 128, 5)
        read = read_attributes(img)
        assert (read["object"], read.get("colour")) == ("house", colour), read


def test_metrics_helpers():
    img, _ = render_scene({"time": "day", "sky": "clouds", "terrain": "hills", "water": "sea", "vegetation": "none",
                           "object": "tower", "colour": "red"}, 128, 128, 0)
    grey = img[..., 0]
    assert abs(ssim(grey, grey) - 1) < 1e-9
    mask = np.zeros((128, 128), np.uint8)
    mask[40:80, 40:80] = 255
    assert seam_energy(img, img, mask) >= 0


def test_horizon_rule_agrees_across_an_outpainting_seam_on_ground_truth():
    """The outpainting metric compares the horizon in the 32-px strips either side of x = 128; on a
    scene drawn 192 px wide in one piece, the two strips must agree (≤ 4 px) nearly always
    (199 of 200 scenes when the rule was written; the previous edge-step rule: 82 %)."""
    from training.house.captions import held_out_prompts
    from training.house.rules import read_time

    agree = []
    for j, (attrs, _) in enumerate(held_out_prompts(60)):
        img, _ = render_scene(attrs, 192, 128, 5000 + j)
        time = read_time(img)
        agree.append(abs(horizon_row(img[:, 96:128], time) - horizon_row(img[:, 128:160], time)) <= 4)
    assert np.mean(agree) >= 0.95, np.mean(agree)


def test_horizon_rule_ignores_a_straight_terrain_top():
    """A scene whose terrain band runs dead straight (as the model often paints it past an outpaint
    seam): the top of the band is a stronger step than the faint sand-on-sand ground line, and the
    previous edge-step rule read it; the class rule reads the ground line."""
    from training.house.rules import edge_horizon_row
    from training.house.scene import LIGHT, SKY, TERRAIN

    light = np.asarray(LIGHT["day"])
    img = np.zeros((128, 32, 3), np.uint8)
    img[:] = SKY["day"][1]
    img[62:70] = np.asarray(TERRAIN["dunes"][0]) * light
    img[70:] = np.asarray(TERRAIN["dunes"][1]) * light
    soft = cv2.GaussianBlur(img, (0, 0), 1.0)  # decoded images soften the faint step over two rows
    assert abs(horizon_row(soft, "day") - 70) <= 1
    assert abs(edge_horizon_row(soft, "day") - 62) <= 1


SHIPPED = Path(__file__).resolve().parents[2] / "assets" / "house"


@pytest.mark.skipif(not (SHIPPED / "full" / "model_index.json").exists(), reason="no shipped house model")
def test_horizon_rule_reads_vae_decoded_scenes():
    """Every generated image is decoded by the house VAE, which softens edges and shifts colours.
    On ground-truth scenes passed through it, the rule must still find the true line and agree
    across the seam (when written, on 200 scenes: true line in both strips 70 %, agreement 87 %;
    forest scenes hide the line behind trees; the edge-step rule: 13 % and 45 %)."""
    from training.house.captions import held_out_prompts
    from training.house.evaluate import vae_roundtrip
    from training.house.rules import edge_horizon_row, read_time
    from inference.loader import load_model

    vae = load_model(SHIPPED / "full", dtype="float32").vae
    scenes = [render_scene(attrs, 192, 128, 7000 + j) for j, (attrs, _) in enumerate(held_out_prompts(40, seed=99))]
    decoded = vae_roundtrip(vae, [img for img, _ in scenes])
    found, agree, found_edge = [], [], []
    for img, (_, truth) in zip(decoded, scenes):
        time = read_time(img)
        a, b = horizon_row(img[:, 96:128], time), horizon_row(img[:, 128:160], time)
        found.append(max(abs(a - truth.horizon), abs(b - truth.horizon)) <= 4)
        agree.append(abs(a - b) <= 4)
        found_edge.append(abs(edge_horizon_row(img[:, 96:128], time) - truth.horizon) <= 4)
    assert np.mean(found) >= 0.55 and np.mean(agree) >= 0.75, (np.mean(found), np.mean(agree))
    assert np.mean(found) > np.mean(found_edge) + 0.2
