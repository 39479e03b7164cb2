"""The model families without training: shapes against torchaudio's own builders (on the meta device), the
registry, user factories and their errors, options, per-layer maps and CTC transcripts.

Training a step of each tiny model: tests/test_model_families_training.py.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

from w2vprof.errors import BadInput, SettingError
from w2vprof.models import (
    CTC,
    MODEL_NAMES,
    PRETRAIN,
    ModelOptions,
    count_parameters,
    get_family,
    list_models,
    make_options,
    model_names,
)

DOCS = Path(__file__).resolve().parent.parent / "docs" / "models.md"
EXAMPLE = Path(__file__).resolve().parent / "model_family_example.py"


def _on_meta(build):
    from w2vprof.models.meta import on_meta

    with on_meta():
        return build()


def _parameter_shapes(module) -> list[tuple[str, tuple[int, ...]]]:
    return [(name, tuple(p.shape)) for name, p in module.named_parameters()]


# -- torchaudio's builders, module by module ----------------------------------------------------------------------
#: (our model, torchaudio builder, our module -> torchaudio's, torchaudio's count in millions as its docs give it)
WHOLE_HUBERT = {
    "feature_extractor": "wav2vec2.feature_extractor",
    "feature_projection": "wav2vec2.encoder.feature_projection",
    "transformer": "wav2vec2.encoder.transformer",
    "final_proj": "logit_generator.final_proj",
}
ENCODER = {
    "feature_extractor": "feature_extractor",
    "feature_projection": "encoder.feature_projection",
    "transformer": "encoder.transformer",
}
CASES = [
    ("hubert-base", "hubert_pretrain_base", WHOLE_HUBERT, 94.594),
    ("hubert-large", "hubert_pretrain_large", WHOLE_HUBERT, 316.606),
    ("wavlm-base", "wavlm_base", ENCODER, 94.381),
    ("wavlm-large", "wavlm_large", ENCODER, 315.452),
    ("xlsr-300m", "wav2vec2_xlsr_300m", ENCODER, 315.438),
]


@pytest.mark.parametrize(("name", "builder", "modules", "millions"), CASES, ids=[c[0] for c in CASES])
def test_parameters_match_torchaudio_module_by_module(name, builder, modules, millions):
    import torchaudio

    ours = _on_meta(lambda: get_family(name).build(PRETRAIN))
    theirs = _on_meta(getattr(torchaudio.models, builder))
    for mine, their in modules.items():
        assert _parameter_shapes(ours.get_submodule(mine)) == _parameter_shapes(theirs.get_submodule(their)), mine
    compared = sum(p.numel() for module in modules for p in ours.get_submodule(module).parameters())
    if modules is WHOLE_HUBERT:  # and the two parameters held outside those modules
        assert ours.mask_embedding.shape == theirs.mask_generator.mask_embedding.shape
        assert ours.cluster_prediction.label_embeddings.shape == theirs.logit_generator.label_embeddings.shape
        compared = sum(p.numel() for p in ours.parameters())
    assert compared == sum(p.numel() for p in theirs.parameters())
    assert abs(compared / 1e6 - millions) / millions < 0.005


def test_hubert_clusters_default_per_torchaudio_and_follow_the_option():
    base, large = get_family("hubert-base"), get_family("hubert-large")
    assert base.config.clusters == 100 and large.config.clusters == 500  # torchaudio's num_classes
    assert get_family("wavlm-base").config.clusters == 500
    model = _on_meta(lambda: base.build(PRETRAIN, ModelOptions(clusters=500)))
    assert tuple(model.cluster_prediction.label_embeddings.shape) == (500, 256)
    growth = count_parameters(base, PRETRAIN, ModelOptions(clusters=500)) - count_parameters(base)
    assert growth == 400 * 256  # 400 more label embeddings of final_dim 256


def test_billion_parameter_models_are_counted_without_weights():
    import torchaudio

    family = get_family("xlsr-2b")
    model = _on_meta(lambda: family.build(PRETRAIN))
    assert {p.device.type for p in model.parameters()} == {"meta"}
    encoder = _on_meta(torchaudio.models.wav2vec2_xlsr_2b)
    for mine, their in ENCODER.items():
        assert _parameter_shapes(model.get_submodule(mine)) == _parameter_shapes(encoder.get_submodule(their))
    assert 2.15e9 < count_parameters(family) < 2.17e9


@pytest.mark.parametrize("name", ["hubert-base", "wavlm-base"])
def test_masked_prediction_models_on_meta_hold_nothing_on_the_cpu(name):
    """torchaudio makes the label and mask embeddings with torch.FloatTensor, which ignores the meta device."""
    model = _on_meta(lambda: get_family(name).build(PRETRAIN))
    assert {p.device.type for p in model.parameters()} == {"meta"}


def test_ctc_model_is_the_encoder_and_speechbrains_head():
    base = get_family("base")
    model = _on_meta(lambda: base.build(CTC, make_options(vocab=40)))
    head = [(name, tuple(p.shape)) for name, p in model.named_parameters() if name.startswith(("ctc_", "ctc_lin"))]
    assert head == [
        ("ctc_head.blocks.0.linear.weight", (1024, 768)),
        ("ctc_head.blocks.0.linear.bias", (1024,)),
        ("ctc_head.blocks.0.norm.weight", (1024,)),
        ("ctc_head.blocks.0.norm.bias", (1024,)),
        ("ctc_head.blocks.1.linear.weight", (1024, 1024)),
        ("ctc_head.blocks.1.linear.bias", (1024,)),
        ("ctc_head.blocks.1.norm.weight", (1024,)),
        ("ctc_head.blocks.1.norm.bias", (1024,)),
        ("ctc_head.blocks.2.linear.weight", (1024, 1024)),
        ("ctc_head.blocks.2.linear.bias", (1024,)),
        ("ctc_head.blocks.2.norm.weight", (1024,)),
        ("ctc_head.blocks.2.norm.bias", (1024,)),
        ("ctc_lin.weight", (40, 1024)),
        ("ctc_lin.bias", (40,)),
    ]
    pretraining = _on_meta(lambda: base.build(PRETRAIN))
    for module in ENCODER:  # the same encoder as pretraining's, without its head
        encoder = [n for n, p in model.get_submodule(module).named_parameters()]
        assert encoder == [n for n, p in pretraining.get_submodule(module).named_parameters()]
    assert not hasattr(model, "mask_embedding")


# -- per-layer maps and Table 1 groups ------------------------------------------------------------------------------
def test_wav2vec2_family_layers_are_the_measurement_paths_rows():
    """The measurement path takes its layers from the family (measure.engine.make_step): the rows of the golden
    tiny profile are the family's map, in order."""
    import csv
    from pathlib import Path

    from w2vprof.models.layers import PRETRAINING_GROUPS

    family = get_family("tiny")
    model = _on_meta(lambda: family.build(PRETRAIN))
    golden = Path(__file__).parent / "golden" / "numbers" / "profile_tiny_b2_1s_layers.csv"
    with golden.open(newline="") as rows:
        assert [layer.name for layer in family.layers(model)] == [row["layer"] for row in csv.DictReader(rows)]
    assert family.summary_groups(model) == PRETRAINING_GROUPS


@pytest.mark.parametrize(
    ("name", "objective"), [(n, o) for n in ("base", "hubert-base", "wavlm-base") for o in (PRETRAIN, CTC)]
)
def test_every_parameter_is_in_exactly_one_layer(name, objective):
    family = get_family(name)
    model = _on_meta(lambda: family.build(objective))
    owners: dict[int, list[str]] = {}
    for layer in family.layers(model):
        params = [p for path in layer.modules for p in model.get_submodule(path).parameters()]
        params += [getattr(model, attribute) for attribute in layer.parameters]
        for p in params:
            owners.setdefault(id(p), []).append(layer.name)
    assert {id(p) for p in model.parameters()} == set(owners)
    assert all(len(names) == 1 for names in owners.values()), {k: v for k, v in owners.items() if len(v) > 1}
    groups = set(family.summary_groups(model))
    assert {family.group_of(layer) for layer in family.layers(model)} <= groups
    if objective == CTC:
        names = [layer.name for layer in family.layers(model)]
        assert names[-6:] == ["ctc_head.0", "ctc_head.1", "ctc_head.2", "ctc_lin", "ctc_loss", "objective"]
        assert "quantizer" not in groups


# -- registry -----------------------------------------------------------------------------------------------------
def test_the_registry_lists_every_model_with_its_source():
    names = model_names()
    assert names[: len(MODEL_NAMES)] == MODEL_NAMES  # wav2vec 2.0 first: `get_config` still answers for these
    for expected in ("xlsr-1b", "hubert-xlarge", "wavlm-large", "hubert-tiny", "wavlm-tiny"):
        assert expected in names
    rows = list_models(count=False)
    assert [row.name for row in rows] == list(names)
    assert {row.kind for row in rows} == {"wav2vec 2.0", "HuBERT", "WavLM"}
    assert all(row.source and row.objectives == (PRETRAIN, CTC) for row in rows)
    assert "hubert_pretrain_base" in get_family("hubert-base").source


def test_an_unknown_model_lists_the_known_ones():
    with pytest.raises(BadInput) as raised:
        get_family("hubert-huge")
    message = str(raised.value)
    assert message.startswith("unknown model 'hubert-huge'; choose from base, large, ")
    assert "hubert-base" in message and "wavlm-tiny" in message and "package.module:factory" in message
    assert raised.value.exit_code == 2 and "\n" not in message


def test_sizes_answer_for_every_model():
    from w2vprof.models.size import check_utterance_length, parameter_bytes, receptive_field_samples

    assert receptive_field_samples("hubert-base") == receptive_field_samples("xlsr-2b") == 400
    assert parameter_bytes("hubert-tiny") == 4 * count_parameters(get_family("hubert-tiny"))
    assert parameter_bytes("tiny", objective=CTC) == 4 * count_parameters(get_family("tiny"), CTC) != 4 * 108_816
    with pytest.raises(BadInput, match="receptive field"):
        check_utterance_length(0.02, "wavlm-base")


# -- options and objectives ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "line"),
    [
        ({"vocab": 0}, "vocab must be a whole number of at least 2 (the blank and one character), got 0"),
        ({"vocab": 1}, "vocab must be a whole number of at least 2 (the blank and one character), got 1"),
        ({"vocab": "x"}, "vocab must be a whole number of at least 2 (the blank and one character), got 'x'"),
        ({"clusters": 0}, "clusters must be a positive whole number, got 0"),
        ({"clusters": -5}, "clusters must be a positive whole number, got -5"),
        ({"clusters": True}, "clusters must be a positive whole number, got True"),
    ],
)
def test_bad_options_are_one_line_naming_the_setting(options, line):
    with pytest.raises(SettingError) as raised:
        make_options(**options)
    assert str(raised.value) == line and raised.value.exit_code == 2


def test_options_from_text():
    assert make_options(clusters="500", vocab="28") == ModelOptions(clusters=500, vocab=28)
    assert make_options() == ModelOptions(clusters=None, vocab=32)


def test_an_objective_a_family_does_not_offer():
    family = get_family("model_family_example:conformer_family")
    with pytest.raises(
        SettingError, match=r"^objective 'pretrain' is not offered by model small-conformer: it offers ctc$"
    ):
        family.check_objective(PRETRAIN)
    with pytest.raises(SettingError, match=r"^objective 'finetune' is unknown; choose from pretrain, ctc$"):
        get_family("base").check_objective("finetune")


# -- user factories -----------------------------------------------------------------------------------------------
def test_a_user_factory_returns_its_family():
    family = get_family("model_family_example:conformer_family")
    assert family.name == "small-conformer" and family.objectives == (CTC,)
    model = _on_meta(lambda: family.build(CTC))
    names = [layer.name for layer in family.layers(model)]
    assert names == ["frontend", "conformer.0", "conformer.1", "conformer.2", "conformer.3", "output", "objective"]


@pytest.fixture
def user_modules(tmp_path, monkeypatch):
    """A folder of user modules on the import path, forgotten again afterwards."""
    (tmp_path / "returns_a_module.py").write_text("import torch\ndef factory():\n    return torch.nn.Linear(2, 2)\n")
    (tmp_path / "raises.py").write_text("def factory():\n    raise RuntimeError('no GPU here\\nsecond line')\n")
    (tmp_path / "broken.py").write_text("import nosuchdependency\n")
    (tmp_path / "not_callable.py").write_text("factory = 3\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    for name in ("returns_a_module", "raises", "broken", "not_callable"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize(
    ("spec", "line"),
    [
        (
            "nosuch.module:f",
            "model 'nosuch.module:f': cannot import module nosuch.module: ModuleNotFoundError: "
            "No module named 'nosuch'",
        ),
        (
            "broken:factory",
            "model 'broken:factory': cannot import module broken: ModuleNotFoundError: "
            "No module named 'nosuchdependency'",
        ),
        ("returns_a_module:nothing", "model 'returns_a_module:nothing': module returns_a_module has no 'nothing'"),
        ("not_callable:factory", "model 'not_callable:factory': not_callable.factory is int 3, not callable"),
        ("raises:factory", "model 'raises:factory': raises.factory() failed: RuntimeError: no GPU here"),
        (
            "returns_a_module:factory",
            "model 'returns_a_module:factory': returns_a_module.factory() returned Linear "
            "Linear(in_features=2, out_features=2, bias=True), not a w2vprof.models.ModelFamily",
        ),
        ("returns_a_module:", "model 'returns_a_module:': a model of your own is written package.module:factory"),
        (":factory", "model ':factory': a model of your own is written package.module:factory"),
    ],
)
def test_a_factory_that_fails_is_one_line_naming_the_module(user_modules, spec, line):
    with pytest.raises(BadInput) as raised:
        get_family(spec)
    assert str(raised.value) == line
    assert raised.value.exit_code == 2


def test_a_factory_beside_the_user_is_found_from_the_working_directory(tmp_path, monkeypatch):
    (tmp_path / "beside_me.py").write_text(EXAMPLE.read_text(encoding="utf-8"))
    monkeypatch.chdir(tmp_path)
    try:
        assert get_family("beside_me:conformer_family").name == "small-conformer"
        assert str(tmp_path) not in sys.path  # put back as it was
    finally:
        sys.modules.pop("beside_me", None)


def test_the_docs_example_is_the_tested_example():
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, flags=re.S)
    assert EXAMPLE.read_text(encoding="utf-8") in blocks


# -- CTC transcripts ----------------------------------------------------------------------------------------------
def test_transcripts_are_drawn_at_the_documented_rate():
    import torch

    from w2vprof.models.config import get_config
    from w2vprof.models.ctc import CHARS_PER_SECOND, draw_transcripts

    # the rate follows from the figures docs/models.md cites: LibriSpeech dev-clean + test-clean
    assert round((288_456 + 281_530) / ((5.4 + 5.4) * 3600), 1) == CHARS_PER_SECOND
    assert f"{CHARS_PER_SECOND} characters per second" in DOCS.read_text(encoding="utf-8")
    conv = get_config("base").conv_layers
    samples = np.array([88_000, 16_000, 480])  # 5.5 s, 1 s, 0.03 s (one frame)
    drawn = draw_transcripts(samples, conv, 32, torch.device("cpu"), torch.Generator().manual_seed(0))
    assert drawn.lengths.tolist() == [81, 15, 1]  # round(5.5 * 14.7), round(1 * 14.7), at least one
    assert drawn.labels.shape == (3, 81)
    real = torch.arange(81)[None, :] < drawn.lengths[:, None]
    assert bool((drawn.labels[real] >= 1).all() and (drawn.labels[real] < 32).all())  # never the blank
    assert bool((drawn.labels[~real] == 0).all())
    short = draw_transcripts(np.array([3_200]), conv, 32, torch.device("cpu"))  # 0.2 s: 9 frames, 3 characters
    assert short.lengths.tolist() == [3]
    clamped = draw_transcripts(np.array([3_200]), conv, 32, torch.device("cpu"), chars_per_second=100.0)
    assert clamped.lengths.tolist() == [4]  # at most half the frames


# -- Table 1's pass ------------------------------------------------------------------------------------------------
TINIES = [(name, objective) for name in ("tiny", "hubert-tiny", "wavlm-tiny") for objective in (PRETRAIN, CTC)]
TINIES += [("model_family_example:conformer_family", CTC)]


@pytest.mark.parametrize(("name", "objective"), TINIES)
def test_table1_pass_on_meta_puts_every_flop_in_a_listed_module(name, objective):
    """The inference pass runs on the meta device, padded batch and all, through module forwards only: nothing
    lands on the `objective` row, so Table 1's groups add up to the whole pass."""
    import torch

    from w2vprof.measure.flops import count_flops
    from w2vprof.measure.summary import flops_per_layer
    from w2vprof.models import OBJECTIVE
    from w2vprof.workload import Batch

    family = get_family(name)
    with torch.no_grad():
        model = _on_meta(lambda: family.build(objective).eval())
        from w2vprof.models.meta import on_meta

        with on_meta(), count_flops() as counter:
            lengths = torch.tensor([16_000, 12_000], device="cpu")  # on the host, as w2vprof keeps them
            family.inference(model, Batch(torch.zeros(2, 16_000), lengths))
    count = counter.snapshot()
    per_layer = flops_per_layer(count, type(model).__name__, family.layers(model))
    assert count.total > 0 and per_layer[OBJECTIVE] == 0


def test_a_model_built_with_another_learning_rate_trains_with_it():
    """build_model(name, lr=...) changes the model's configuration; the step's optimizer must follow it, not the
    registry's value (the optimizer settings come from the model, as before the family interface)."""
    from w2vprof.models import build_model

    family = get_family("tiny")
    default = family.optimizer_settings(_on_meta(lambda: family.build(PRETRAIN)))
    changed = family.optimizer_settings(_on_meta(lambda: build_model("tiny", lr=default.lr / 4)))
    assert changed.lr == default.lr / 4
    assert (changed.betas, changed.eps, changed.weight_decay) == (default.betas, default.eps, default.weight_decay)


@pytest.mark.parametrize(
    "name, builders",
    [
        ("base", ("wav2vec2_model",)),
        ("xlsr-1b", ("wav2vec2_model",)),
        ("hubert-base", ("wav2vec2_model", "hubert_pretrain_model")),
        ("wavlm-large", ("wavlm_model",)),
    ],
)
def test_each_family_asks_the_install_for_the_builders_it_calls(name, builders):
    assert get_family(name).torchaudio_builders() == builders
