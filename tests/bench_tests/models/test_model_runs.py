"""timm and Hugging Face teachers from the files users have (checkpoints, model folders, ONNX)
distilled into timm and Hugging Face students, end to end through ``kdbench run`` and
``kdbench export``, offline; and every bad file refused in one line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.cli import main
from bench.records import load_run
from tests.bench_tests.conftest import assert_refused
from tests.bench_tests.models import zoo
from tests.bench_tests.models.conftest import MOBILENET, RESNET, VIT

IMAGES = 'kind = "file"\nname = "quad"\npath = "{root}/images.npz"\n'
TEXTS = (
    'kind = "file"\nname = "reviews"\npath = "{root}/reviews.csv"\ntarget = "label"\n'
    'text = "review"\nmax_length = 24\n'
)


def _toml_list(paths: list[Path]) -> str:
    return "[" + ", ".join(f'"{p}"' for p in paths) + "]"


def _arch(arch: dict) -> str:
    return "{ " + ", ".join(f"{k} = {v}" for k, v in arch.items()) + " }"


def _suite(task: str, teacher: str, student: str, search: str, certify: bool = True) -> str:
    return f"""
name = "zoo"
[task]
{task}
[teacher]
{teacher}
[student]
family = "{student}"
epochs = 2
batch_size = 32
lr = 3e-3
[search]
{search}
temperature = {{ low = 2.0, high = 4.0 }}
alpha = {{ low = 0.5, high = 0.9 }}
[budget]
trials = 2
seeds = 1
[certify]
candidates = {1 if certify else 0}
seeds = 2
max_gap_pp = 100
[measure]
device = "cpu"
batch = 8
min_run_time = 0.002
warmup = 1
multi_thread = false
runtimes = ["torch"]
"""


def _run(tmp_path: Path, text: str, capsys) -> tuple[int, str, str]:
    suite = tmp_path / "suite.toml"
    suite.write_text(text)
    code = main(
        [
            "run", str(suite), "--out", str(tmp_path / "r"), "--reports", str(tmp_path / "p"),
            "--cache", str(tmp_path / "c"), "-q",
        ]
    )  # fmt: skip
    out, err = capsys.readouterr()
    return code, out, err


def _card_code(card: str, title: str) -> str:
    block = card[card.index(title) :]
    return block[block.index("```python") + 10 : block.index("\n```", block.index("```python"))]


def _exported(tmp_path: Path, run_dir: Path) -> Path:
    out = tmp_path / "ship"
    assert main(["export", str(run_dir), "--out", str(out), "--max-gap", "100"]) == 0
    return out


CASES = {
    # teacher (how it is given) -> student swept
    "timm resnet checkpoints -> timm mobilenetv3": (
        "resnet_ckpts",
        IMAGES,
        'family = "timm:resnet18"\narch = {arch}\ncheckpoints = {paths}',
        RESNET,
        "timm:mobilenetv3_small_100",
        "width = { low = 0.05, high = 0.1, log = true }\ndepth = 0.25",
    ),
    "timm mobilenetv3 checkpoints -> timm vit": (
        "mobilenet_ckpts",
        IMAGES,
        'family = "timm:mobilenetv3_small_100"\narch = {arch}\ncheckpoints = {paths}',
        MOBILENET,
        "timm:vit_tiny_patch16_224",
        "head_width = { low = 4, high = 8 }\nheads = 2\ndepth = 1\npatch_size = 4",
    ),
    "timm vit checkpoints -> timm resnet": (
        "vit_ckpts",
        IMAGES,
        'family = "timm:vit_tiny_patch16_224"\narch = {arch}\ncheckpoints = {paths}',
        VIT,
        "timm:resnet18",
        "width = { low = 0.03, high = 0.06, log = true }\nblocks = 1",
    ),
    "hf vit folders -> hf vit": (
        "hf_vit",
        IMAGES,
        "hf = {paths}",
        None,
        "hf:vit",
        "head_width = { low = 4, high = 8 }\nheads = 2\nlayers = 1\npatch_size = 4",
    ),
    "hf bert folders -> hf bert (text)": (
        "hf_bert",
        TEXTS,
        "hf = {paths}",
        None,
        "hf:bert",
        "head_width = { low = 4, high = 8 }\nheads = 2\nlayers = 1",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_a_library_teacher_distils_into_a_library_student_and_ships(
    case: str, request, zoo_dir: Path, tmp_path: Path, capsys
) -> None:
    fixture, task, teacher, arch, student, search = CASES[case]
    paths = request.getfixturevalue(fixture)
    teacher_text = teacher.format(paths=_toml_list(paths), arch=_arch(arch or {}))
    code, _, err = _run(
        tmp_path, _suite(task.format(root=zoo_dir), teacher_text, student, search), capsys
    )
    assert code == 0, err[-3000:]
    (run_dir,) = (p for p in (tmp_path / "r").iterdir() if (p / "manifest.json").is_file())
    run = load_run(run_dir)
    rows = run.trials.query("state == 'complete'")
    assert len(rows) >= 2 and (rows["family"] == student).all()
    assert rows["student_params"].gt(0).all() and rows["student_flops"].gt(0).all()
    entry = run.manifest.task(rows["task"].iloc[0])
    assert entry.teacher.ensemble_acc > 0.6  # the trained fixtures, well above chance (1/3)
    if "hf" in fixture or "ckpts" in fixture:
        text = "tokens" if fixture == "hf_bert" else "features"
        assert entry.input_kind == text
    if fixture != "hf_bert":  # images: fed as the teacher's model normalises them
        assert entry.normalization is not None
        variant = teacher.split('"')[1].removeprefix("timm:") if "ckpts" in fixture else ""
        mean = zoo.timm_normalisation(variant)[0] if variant else zoo.IMAGENET_MEAN
        assert entry.normalization["mean"] == pytest.approx(list(mean))
    ship = _exported(tmp_path, run_dir)
    blob = torch.load(ship / "student.pt", weights_only=True)
    assert blob["family"] == student
    card = (ship / "MODEL_CARD.md").read_text()
    assert "Checked: onnxruntime" in card  # ONNX on the raw test rows gave the file's accuracy
    code_text = _card_code(card, "PyTorch (`student.pt`")
    lib = "timm" if student.startswith("timm") else "transformers"
    assert f"with {lib}" in card and "build_student" not in code_text
    probe = (
        code_text
        + "\nimport numpy as np\n"
        + "x = torch.as_tensor(np.load('probe.npy'))\n"
        + ("out = model(x)\n" if lib == "timm" else "")
        + (
            "out = model(input_ids=x, attention_mask=(x != 0).long()).logits\n"
            if student == "hf:bert"
            else ""
        )
        + ("out = model(pixel_values=x).logits\n" if student == "hf:vit" else "")
        + "np.save('probe_out.npy', out.detach().numpy())\n"
    )
    # the card's code, run as written in a fresh interpreter, gives the file's outputs
    from kdcore import build_student

    model = build_student(student, blob["input_shape"], blob["num_classes"], **blob["arch"])
    model.load_state_dict(blob["state_dict"])
    model.eval()
    x = (
        torch.randint(1, int(blob["arch"]["vocab_size"]), (3, *blob["input_shape"]))
        if student == "hf:bert"
        else torch.randn(3, *blob["input_shape"])
    )
    np.save(ship / "probe.npy", x.numpy())
    subprocess.run([sys.executable, "-c", probe], cwd=ship, check=True, timeout=300)
    with torch.no_grad():
        want = model(x).numpy()
    np.testing.assert_allclose(np.load(ship / "probe_out.npy"), want, rtol=1e-4, atol=1e-5)
    if student == "hf:bert":
        assert (ship / "tokenizer.json").is_file()
        tok_code = code_text[code_text.index("from tokenizers") :]
        assert "enable_padding" in tok_code and "length=24" in tok_code


@pytest.mark.slow
def test_an_onnx_teacher_with_its_normalisation_stated_in_the_suite(
    onnx_files: list[Path], zoo_dir: Path, tmp_path: Path, capsys
) -> None:
    teacher = (
        f"onnx = {_toml_list(onnx_files)}\nmean = [0.485, 0.456, 0.406]\n"
        "std = [0.229, 0.224, 0.225]\npixel_range = 255"
    )
    text = _suite(
        IMAGES.format(root=zoo_dir),
        teacher,
        "cnn",
        "channels = { low = 4, high = 8 }\nblocks = 1",
        certify=False,
    )
    code, _, err = _run(tmp_path, text, capsys)
    assert code == 0, err[-3000:]
    (run_dir,) = (p for p in (tmp_path / "r").iterdir() if (p / "manifest.json").is_file())
    entry = load_run(run_dir).manifest.task("quad")
    assert entry.teacher.ensemble_acc > 0.6
    assert entry.teacher.params > 0 and entry.teacher.flops != entry.teacher.flops  # NaN
    assert entry.normalization["source"] == "[teacher] mean and std"


BAD = [
    "another architecture",
    "hf folder without config",
    "hf folder with other labels",
    "hf folder with classes in another order",
    "onnx input shape",
    "onnx class count",
    "tokenizer that does not load",
    "unknown timm name",
    "undeclared timm architecture",
    "text student on images",
]


@pytest.mark.parametrize("case", BAD)
def test_bad_model_files_exit_2_with_one_line_and_no_run_folder(
    case: str, request, zoo_dir: Path, tmp_path: Path, capsys
) -> None:
    images = IMAGES.format(root=zoo_dir)
    student, search = "cnn", "channels = 4\nblocks = 1"
    if case == "another architecture":
        paths = request.getfixturevalue("resnet_ckpts")
        task = images
        teacher = (
            f'family = "timm:resnet18"\narch = {{ width = 0.1, blocks = 1 }}\n'
            f"checkpoints = {_toml_list(paths)}"
        )
        expected = "layer 'layer1.0.conv1.weight' has shape [3, 64, 3, 3], expected [6, 64"
    elif case == "hf folder without config":
        empty = tmp_path / "empty_model"
        empty.mkdir()
        task, teacher = images, f'hf = ["{empty}"]'
        expected = "must be a Hugging Face model folder with a config.json"
    elif case == "hf folder with other labels":
        from transformers import ViTConfig, ViTForImageClassification

        other = tmp_path / "five"
        ViTForImageClassification(
            ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=8,
                      num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                      num_labels=5)
        ).save_pretrained(str(other))  # fmt: skip
        task, teacher = images, f'hf = ["{other}"]'
        expected = "whose config has num_labels = 5"
    elif case == "hf folder with classes in another order":
        from transformers import ViTConfig, ViTForImageClassification

        other = tmp_path / "reversed"
        ViTForImageClassification(
            ViTConfig(image_size=16, patch_size=4, num_channels=3, hidden_size=8,
                      num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                      id2label={0: "2", 1: "1", 2: "0"})
        ).save_pretrained(str(other))  # fmt: skip
        task, teacher = images, f'hf = ["{other}"]'
        expected = "id2label is ['2', '1', '0']: set [task] classes = ['2', '1', '0']"
    elif case in ("onnx input shape", "onnx class count"):
        from bench.latency.onnx import onnx_bytes
        from kdcore import build_student

        shape, classes = ((3, 8, 8), 3) if case == "onnx input shape" else ((3, 16, 16), 5)
        path = tmp_path / "bad.onnx"
        path.write_bytes(
            onnx_bytes(build_student("cnn", shape, classes, channels=2, blocks=1), shape)
        )
        task, teacher = images, f'onnx = ["{path}"]\nmean = [0.5, 0.5, 0.5]\nstd = [0.2, 0.2, 0.2]'
        expected = "must take inputs [N, 3, 16, 16]" if "shape" in case else "must output [N, 3]"
    elif case == "tokenizer that does not load":
        broken = tmp_path / "tok"
        broken.mkdir()
        (broken / "tokenizer.json").write_text("{not json")
        task = TEXTS.format(root=zoo_dir) + f'tokenizer = "{broken}"\n'
        teacher = (
            'family = "hf:bert"\narch = { head_width = 4, heads = 1, layers = 1 }\nmembers = 1'
        )
        student, search = "hf:bert", "head_width = 4\nheads = 1\nlayers = 1"
        expected = "must be a Hugging Face tokenizer folder that loads offline"
    elif case == "unknown timm name":
        task, teacher = images, "members = 1\nepochs = 1"
        student, search = "timm:no_such_net", ""
        expected = "'no_such_net' is not a timm architecture"
    elif case == "undeclared timm architecture":
        task, teacher = images, "members = 1\nepochs = 1"
        student, search = "timm:convnext_tiny", ""
        expected = "has no kdbench declaration"
    else:  # a text family on image features
        task, teacher = images, "members = 1\nepochs = 1"
        student, search = "hf:bert", "head_width = 4\nheads = 1\nlayers = 1"
        expected = "must take the inputs of task 'quad', float features"
    code, out, err = _run(tmp_path, _suite(task, teacher, student, search, False), capsys)
    assert_refused(code, out, err, expected, tmp_path / "r")
