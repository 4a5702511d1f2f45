import os
import pickle
import random

import pytest
import torch
from torch import nn

from rs_core.models.architectures import NormalizeLayer, cifar_resnet20, get_architecture
from rs_core.models.checkpoints import (
    CHECKPOINTS_DIR,
    check_input_fits,
    file_sha256,
    load_checkpoint,
    read_index,
    recipe_summary,
    save_checkpoint,
    write_index,
)


def test_loads_a_checkpoint_in_cohen_reference_layout_key_for_key(tmp_path):
    torch.manual_seed(0)
    ref = cifar_resnet20()
    opt = torch.optim.SGD(ref.parameters(), lr=0.1, momentum=0.9)
    ref(torch.rand(2, 3, 32, 32)).sum().backward()
    opt.step()
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({"arch": "cifar_resnet20", "state_dict": ref.state_dict(), "epoch": 90,
                "optimizer": opt.state_dict()}, path)
    loaded = load_checkpoint(path)
    assert loaded.arch == "cifar_resnet20" and loaded.num_classes == 10 and not loaded.model.training
    got = loaded.model.state_dict()
    assert list(got) == list(ref.state_dict())
    for k, v in ref.state_dict().items():
        assert torch.equal(got[k], v), k
    assert loaded.sha256 == file_sha256(path)


def test_loads_resnet50_saved_through_dataparallel(tmp_path):
    from torchvision.models import resnet50

    ref = nn.Sequential(NormalizeLayer((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)), nn.DataParallel(resnet50()))
    state = ref.state_dict()
    assert next(iter(state)).startswith("1.module.")
    torch.save({"arch": "resnet50", "state_dict": state}, tmp_path / "r50.pth.tar")
    loaded = load_checkpoint(tmp_path / "r50.pth.tar", dataset="imagenet")
    assert loaded.num_classes == 1000 and torch.equal(loaded.model.state_dict()["1.module.fc.weight"],
                                                      state["1.module.fc.weight"])


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = "/tmp/rs_core_payload_ran"


@pytest.mark.parametrize("writer", ["torch", "pickle"])
def test_a_pickle_with_a_payload_is_refused_and_never_runs(tmp_path, writer):
    if os.path.exists(MARKER):
        os.remove(MARKER)
    path = tmp_path / "evil.pth.tar"
    obj = {"arch": "cifar_resnet20", "state_dict": cifar_resnet20().state_dict(), "evil": Payload()}
    if writer == "torch":
        torch.save(obj, path)
    else:
        path.write_bytes(pickle.dumps(obj))
    with pytest.raises(ValueError, match="^checkpoint: refused"):
        load_checkpoint(path)
    assert not os.path.exists(MARKER)


def test_truncated_and_garbage_files_are_refused(tmp_path):
    good = tmp_path / "good.pth.tar"
    save_checkpoint(good, cifar_resnet20(), "cifar_resnet20", epoch=1)
    data = good.read_bytes()
    (tmp_path / "truncated.pth.tar").write_bytes(data[: len(data) // 2])
    (tmp_path / "garbage.pth.tar").write_bytes(random.Random(0).randbytes(4096))  # fixed bytes: no flaky test
    (tmp_path / "empty.pth.tar").write_bytes(b"")
    for name in ["truncated", "garbage", "empty"]:
        with pytest.raises(ValueError, match="^checkpoint: .*(corrupt|truncated)"):
            load_checkpoint(tmp_path / f"{name}.pth.tar")
    with pytest.raises(ValueError, match="^checkpoint: no such file"):
        load_checkpoint(tmp_path / "missing.pth.tar")


def test_unknown_arch_missing_keys_wrong_shapes_and_classes(tmp_path):
    sd = cifar_resnet20().state_dict()
    torch.save({"arch": "resnet9000", "state_dict": sd}, tmp_path / "a.pth")
    with pytest.raises(ValueError, match="^arch: unknown architecture 'resnet9000'"):
        load_checkpoint(tmp_path / "a.pth")
    partial = {k: v for k, v in sd.items() if "layer3" not in k}
    torch.save({"arch": "cifar_resnet20", "state_dict": partial}, tmp_path / "b.pth")
    with pytest.raises(ValueError, match="^checkpoint: keys do not match cifar_resnet20: missing"):
        load_checkpoint(tmp_path / "b.pth")
    torch.save({"arch": "cifar_resnet110", "state_dict": sd}, tmp_path / "c.pth")
    with pytest.raises(ValueError, match="^checkpoint: keys do not match"):
        load_checkpoint(tmp_path / "c.pth")
    wide = dict(sd)
    wide["1.conv1.weight"] = torch.zeros(16, 3, 5, 5)
    torch.save({"arch": "cifar_resnet20", "state_dict": wide}, tmp_path / "d.pth")
    with pytest.raises(ValueError, match="^checkpoint: tensor shapes do not match"):
        load_checkpoint(tmp_path / "d.pth")
    torch.save({"arch": "cifar_resnet20", "state_dict": cifar_resnet20(num_classes=100).state_dict()}, tmp_path / "e.pth")
    with pytest.raises(ValueError, match="^checkpoint: the model scores 100 classes, but 10 are expected for cifar10"):
        load_checkpoint(tmp_path / "e.pth", dataset="cifar10")
    assert load_checkpoint(tmp_path / "e.pth").num_classes == 100
    torch.save(sd, tmp_path / "bare.pth")
    with pytest.raises(ValueError, match="^arch:"):
        load_checkpoint(tmp_path / "bare.pth")
    assert load_checkpoint(tmp_path / "bare.pth", arch="cifar_resnet20").arch == "cifar_resnet20"
    torch.save([1, 2, 3], tmp_path / "list.pth")
    with pytest.raises(ValueError, match="^checkpoint: expected"):
        load_checkpoint(tmp_path / "list.pth")


def test_input_that_does_not_fit_is_refused(tmp_path):
    save_checkpoint(tmp_path / "m.pth.tar", get_architecture("mnist_cnn"), "mnist_cnn", epoch=1)
    loaded = load_checkpoint(tmp_path / "m.pth.tar")
    check_input_fits(loaded, (1, 28, 28))
    with pytest.raises(ValueError, match=r"^x: the model takes inputs of shape \(1, 28, 28\)"):
        check_input_fits(loaded, (3, 32, 32))


def test_save_writes_plain_metadata_and_the_index_lists_it(tmp_path):
    meta = {"dataset": "mnist", "sigma": 0.5, "torch": torch.__version__, "accuracy": {"test_noisy": 0.9}}
    path = tmp_path / "mnist" / "mnist_cnn" / "noise_0.50" / "checkpoint.pth.tar"
    save_checkpoint(path, get_architecture("mnist_cnn"), "mnist_cnn", epoch=3, meta=meta)
    loaded = load_checkpoint(path)
    assert loaded.sigma == 0.5 and type(loaded.meta["torch"]) is str
    entries = write_index(tmp_path)
    assert entries == read_index(tmp_path)
    assert entries[0]["path"] == "mnist/mnist_cnn/noise_0.50/checkpoint.pth.tar"
    assert entries[0]["sha256"] == file_sha256(path)


def test_every_shipped_checkpoint_is_indexed_loads_and_matches_its_hash():
    entries = read_index()
    files = sorted(str(p.relative_to(CHECKPOINTS_DIR)) for p in CHECKPOINTS_DIR.rglob("checkpoint.pth.tar"))
    assert sorted(e["path"] for e in entries) == files
    for e in entries:
        loaded = load_checkpoint(CHECKPOINTS_DIR / e["path"], dataset=e["dataset"])
        assert loaded.sha256 == e["sha256"]
        assert loaded.sigma == e["sigma"] and loaded.meta["dataset"] == e["dataset"]
        # The model menu's recipe is the file's own: an index written before a retraining would name the old one.
        expected = None if e.get("kind") == "denoiser" else recipe_summary(loaded.meta.get("recipe"))
        assert e["recipe"] == expected


@pytest.mark.parametrize(("recipe", "text"), [
    ({"sigma": 0.5, "epochs": 20}, "Gaussian augmentation, 20 epochs"),
    ({"sigma": 0.5, "epochs": 20, "consistency": 5.0}, "consistency λ = 5, 20 epochs"),  # stored before objectives
    ({"sigma": 0.5, "epochs": 60, "objective": "consistency", "consistency": 10.0}, "consistency λ = 10, 60 epochs"),
    ({"sigma": 1.0, "epochs": 1, "objective": "smoothadv", "smoothadv_eps": 2.0, "smoothadv_m": 4,
      "smoothadv_steps": 1}, "SmoothAdv ε = 2, m = 4, 1 step, 1 epoch"),
    ({"sigma": 0.25, "epochs": 30, "objective": "macer", "macer_lambda": 4.0, "macer_k": 8}, "MACER λ = 4, k = 8, 30 epochs"),
    ({"sigma": 0.25, "epochs": 30, "objective": "macer", "macer_deferred": 10}, ("MACER λ = 16, k = 16, "
                                                                                   "deferred 10 epochs, 30 epochs")),
    ({"sigma": 0.0, "epochs": 4, "consistency": 5.0}, "clean, 4 epochs"),
    ({"sigma": 0.5}, None), ("not a recipe", None),
])
def test_the_recipe_summary_names_the_objective_its_main_hyper_parameters_and_the_epochs(recipe, text):
    assert recipe_summary(recipe) == text
