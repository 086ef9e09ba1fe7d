"""Core hooks added for input-corrupting tasks and for bundles as backbones."""

import torch

import tunekit
from tunekit.assembly import load_backbone
from tunekit.classify import ClassifyTask
from tunekit.testing import make_tiny_model
from tunekit.trainer import Trainer

TEXTS = [
    ("a good film", "pos"),
    ("a bad film", "neg"),
    ("great fun", "pos"),
    ("dull and slow", "neg"),
] * 4


class RecordingTask(ClassifyTask):
    name = "recording"
    cacheable_inputs = False
    calls: list[str] = []

    def collate(self, features, tokenizer):
        RecordingTask.calls.append("eval")
        return super().collate(features, tokenizer)

    def collate_train(self, features, tokenizer):
        RecordingTask.calls.append("train")
        return super().collate(features, tokenizer)


def _trainer(tmp_path, task, strategy="full"):
    from tunekit.api import build_run
    from tunekit.config import TrainingConfig

    path = make_tiny_model(tmp_path / "tiny", [t for t, _ in TEXTS])
    records = task.read(TEXTS)
    task.setup(records)
    backbone = load_backbone(path)
    trainer, _ = build_run(
        task, tunekit.get_strategy(strategy)(), backbone, TrainingConfig(epochs=1, progress=False)
    )
    feats = task.encode(records, backbone.tokenizer, max_length=16, with_labels=True)
    return trainer, feats, records


def test_training_batches_use_collate_train_and_evaluation_collate(tmp_path):
    RecordingTask.calls.clear()
    trainer, feats, records = _trainer(tmp_path, RecordingTask())
    assert isinstance(trainer, Trainer)
    trainer.fit(feats, feats[:4], records[:4])
    assert RecordingTask.calls[0] == "train" and "eval" in RecordingTask.calls
    n_train = -(-len(feats) // trainer.config.batch_size)
    assert RecordingTask.calls.count("train") == n_train


def test_uncacheable_inputs_disable_the_feature_cache(tmp_path):
    if "frozen" not in tunekit.list_strategies():
        return
    trainer, feats, records = _trainer(tmp_path, RecordingTask(), strategy="frozen")
    trainer.fit(feats)
    assert trainer.feature_cache is None


def test_bundle_and_exported_encoder_are_backbones(tmp_path):
    path = make_tiny_model(tmp_path / "tiny", [t for t, _ in TEXTS])
    run = tunekit.finetune(
        task="classify", model=path, data=TEXTS, eval_split=0.0, epochs=1, progress=False
    )
    run.save(tmp_path / "out" / "bundle")
    run.export_encoder(tmp_path / "enc")
    want = run.model.encoder.state_dict()
    for source in (tmp_path / "out" / "bundle", tmp_path / "out", tmp_path / "enc"):
        got = load_backbone(source).model.state_dict()
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want), source
