"""skorch's idioms (its Basic_Usage and Advanced_Usage notebooks, and the user docs on
callbacks, save and load, history and datasets) with MoBYv2Classifier swapped in."""

import json
import pickle

import numpy as np
import pytest
import torch
from skorch.callbacks import Callback, Checkpoint, EarlyStopping, LRScheduler, ProgressBar
from skorch.dataset import Dataset, ValidSplit
from skorch.helper import predefined_split

from skmoby import MoBYv2Classifier
from tests.clients.conftest import INPUTS, as_form, backbone_for, make


@pytest.mark.parametrize("form", INPUTS)
def test_fit_predict_on_every_input_form(digits, form):
    X, y = digits
    Xf, yf = as_form(form, X[:200], y[:200])
    clf = make(backbone=backbone_for(form)).fit(Xf, yf)
    Xt, _ = as_form(form, X[200:260])
    want = make(backbone=backbone_for(form)).fit(
        *as_form("flat" if form == "flat" else "n,C,H,W", X[:200], y[:200])
    )
    # every form is the same data: the same seed trains the same model
    np.testing.assert_array_equal(
        clf.predict(Xt),
        want.predict(as_form("flat" if form == "flat" else "n,C,H,W", X[200:260])[0]),
    )
    assert clf.predict_proba(Xt).shape == (60, 10)


@pytest.mark.parametrize("form", ["n,H,W", "n,C,H,W"])
def test_default_constructor_fits_and_predicts(digits, form):
    X, y = digits
    clf = make("default").fit(*as_form(form, X[:64], y[:64]))
    assert clf.device_ == ("cuda" if torch.cuda.is_available() else "cpu")
    assert clf.predict(as_form(form, X[64:80])[0]).shape == (16,)


def test_skorch_paths_take_images_without_channel_axis(fitted_hw, digits):
    X, y = digits
    want = fitted_hw.predict_proba(X[400:450])
    logits = fitted_hw.forward(X[400:450])
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), want, atol=1e-5)
    np.testing.assert_allclose(
        fitted_hw.predict_proba(Dataset(X[400:450], y[400:450])), want, atol=1e-5
    )
    batches = list(fitted_hw.forward_iter(X[400:450]))
    assert sum(len(b) for b in batches) == 50


def test_predefined_split_validates_on_images_without_channel_axis(digits):
    X, y = digits
    valid = Dataset(X[200:300], y[200:300])
    clf = make(max_epochs=2, train_split=predefined_split(valid)).fit(X[:200], y[:200])
    accs = clf.history[:, "valid_acc"]
    assert len(accs) == 2
    assert accs[-1] == pytest.approx(clf.score(X[200:300], y[200:300]))
    assert all(np.isfinite(clf.history[:, "valid_loss"]))


def test_stratified_valid_split(digits):
    X, y = digits
    clf = make(train_split=ValidSplit(5, stratified=True)).fit(X[:250], y[:250])
    assert 0.0 <= clf.history[-1, "valid_acc"] <= 1.0


def test_fit_loop_called_directly(digits):
    X, y = digits
    clf = make().fit(X[:200], y[:200])
    clf.fit_loop(X[:200], y[:200], epochs=2)
    assert len(clf.history) == 3
    assert all(np.isfinite(clf.history[:, "train_loss"]))


def test_fit_with_epochs_and_train_for_another_n_epochs(digits):
    X, y = digits
    clf = make(max_epochs=5).fit(X[:200], y[:200], epochs=2)
    assert len(clf.history) == 2
    clf.partial_fit(X[:200], y[:200], epochs=1)  # "train for another epoch"
    assert len(clf.history) == 3
    # the shorter calls count in one training run of max_epochs
    assert clf.history[:, "run_epoch"] == [1, 2, 3]


@pytest.mark.parametrize("epochs", [0, -1, 1.5, "2", True])
def test_bad_epochs(digits, epochs):
    X, y = digits
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        make().fit(X[:100], y[:100], epochs=epochs)


@pytest.mark.parametrize("callback", [Checkpoint, EarlyStopping])
def test_validation_monitors_without_a_split_are_one_clear_error(digits, tmp_path, callback):
    X, y = digits
    cb = callback(dirname=str(tmp_path)) if callback is Checkpoint else callback()
    with pytest.raises(ValueError, match=r"train_split is None.*monitor='train_loss"):
        make(callbacks=[cb]).fit(X[:100], y[:100])


def test_checkpoint_and_early_stopping_with_a_split_or_a_training_monitor(digits, tmp_path):
    X, y = digits
    clf = make(
        max_epochs=2,
        callbacks=[
            Checkpoint(monitor="train_loss_best", dirname=str(tmp_path / "a")),
            EarlyStopping(monitor="train_loss", patience=5),
        ],
    ).fit(X[:100], y[:100])
    assert (tmp_path / "a" / "params.pt").exists()
    assert len(clf.history) == 2
    make(train_split=ValidSplit(4), callbacks=[Checkpoint(dirname=str(tmp_path / "b"))]).fit(
        X[:120], y[:120]
    )
    assert (tmp_path / "b" / "params.pt").exists()


def test_save_and_load_params_into_a_new_estimator(fitted_hw, digits, tmp_path):
    X, _ = digits
    fitted_hw.save_params(f_params=tmp_path / "p.pt", f_history=tmp_path / "h.json")
    new = make(input_shape=(8, 8), classes=list(range(10)))
    new.initialize()
    new.load_params(f_params=tmp_path / "p.pt", f_history=tmp_path / "h.json")
    np.testing.assert_array_equal(new.predict(X[400:500]), fitted_hw.predict(X[400:500]))
    assert len(new.history) == len(fitted_hw.history)


def test_initialize_without_data_names_what_it_needs():
    with pytest.raises(ValueError, match="input_shape"):
        make().initialize()
    with pytest.raises(ValueError, match="classes"):
        make(input_shape=(8, 8)).initialize()


def test_initialize_then_partial_fit_normalizes_as_fit_does(digits):
    X, y = digits
    fit = make().fit(X[:200], y[:200])
    late = make(input_shape=(8, 8), classes=list(range(10))).initialize()
    late.partial_fit(X[:200], y[:200])
    np.testing.assert_allclose(late.mean_, fit.mean_)
    np.testing.assert_allclose(late.module_.input_std.numpy(), fit.std_.astype(np.float32))
    np.testing.assert_allclose(
        late.predict_proba(X[200:300]), fit.predict_proba(X[200:300]), atol=1e-5
    )


class DumpBatch(Callback):
    """skorch's docs: callbacks read the batch rows of the history during an epoch."""

    def __init__(self):
        self.rows = []

    def on_batch_end(self, net, **kwargs):
        self.rows.append(json.dumps(net.history[-1, "batches", -1]))


def test_batch_callbacks_see_floats(digits):
    X, y = digits
    dump = DumpBatch()
    clf = make(callbacks=[dump]).fit(X[:200], y[:200])
    assert len(dump.rows) == len(clf.history[-1, "batches"])
    assert isinstance(json.loads(dump.rows[0])["train_loss"], float)


def test_progress_bar_shows_float_losses(digits, capsys):
    X, y = digits
    clf = make(callbacks=[ProgressBar()]).fit(X[:100], y[:100])
    assert all(type(v) is float for v in clf.history[-1, "batches", :, "train_loss"])
    assert "tensor(" not in capsys.readouterr().err


def test_history_holds_floats_after_each_epoch(fitted_hw):
    losses = fitted_hw.history[:, "batches", :, "train_loss"]
    assert all(type(v) is float for epoch in losses for v in epoch)
    # epoch rows: skorch's own averages (numpy floats)
    assert all(isinstance(v, float) for v in fitted_hw.history[:, "train_loss"])


def test_users_lr_scheduler_replaces_the_built_in_schedule(digits):
    X, y = digits
    sched = LRScheduler("StepLR", step_size=1, gamma=0.5)
    clf = make(lr=0.1, max_epochs=3, callbacks=[("lr_scheduler", sched)])
    clf.fit(X[:100], y[:100])
    assert clf.history[:, "event_lr"] == pytest.approx([0.1, 0.05, 0.025])


def test_warm_start_and_set_params(digits):
    X, y = digits
    clf = make(warm_start=True).fit(X[:200], y[:200])
    first = clf.predict_proba(X[200:300])
    clf.fit(X[:200], y[:200])  # continues from the fitted weights
    assert len(clf.history) == 2
    assert not np.allclose(clf.predict_proba(X[200:300]), first)
    clf.set_params(warm_start=False).fit(X[:200], y[:200])
    assert len(clf.history) == 1


def test_pickle_round_trip_predicts_the_same(fitted_hw, digits):
    X, _ = digits
    again = pickle.loads(pickle.dumps(fitted_hw))
    np.testing.assert_array_equal(again.predict(X[400:500]), fitted_hw.predict(X[400:500]))


def test_a_dict_of_several_inputs_is_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match=r"X is a dict with keys \['a', 'b'\]"):
        make().fit({"a": X[:100], "b": X[:100]}, y[:100])


def test_a_dataset_and_a_different_y_are_refused(digits):
    X, y = digits
    with pytest.raises(ValueError, match="y differs from the labels of the Dataset"):
        make().fit(Dataset(X[:100], y[:100]), y[100:200])


def test_a_dataset_and_the_same_y_is_taken(digits):
    X, y = digits
    clf = make().fit(Dataset(X[:100], y[:100]), y[:100])  # as for a stratified split
    assert clf.classes_.tolist() == list(range(10))


def test_a_dataset_of_samples_only_takes_y(digits):
    X, y = digits
    data = torch.utils.data.TensorDataset(torch.from_numpy(X[:100]))
    clf = make().fit(data, y[:100])
    assert len(clf.history) == 1
    with pytest.raises(ValueError, match="requires y"):
        make().fit(data, None)


def test_default_verbose_is_quiet_and_verbose_prints(digits, capsys):
    X, y = digits
    make().fit(X[:100], y[:100])
    assert capsys.readouterr().out == ""
    make(verbose=1).fit(X[:100], y[:100])
    assert "train_loss" in capsys.readouterr().out


def test_a_network_module_class_is_what_skorch_builds(fitted_hw):
    assert isinstance(fitted_hw, MoBYv2Classifier)
    assert isinstance(fitted_hw.module_, torch.nn.Module)


@pytest.mark.parametrize(
    "kwargs", [{"iterator_train__num_workers": 2}, {"iterator_train__shuffle": False}]
)
def test_training_loader_arguments_are_refused_not_ignored(digits, kwargs):
    X, y = digits
    with pytest.raises(ValueError, match=rf"{next(iter(kwargs))} has no effect"):
        make(**kwargs).fit(X[:100], y[:100])


class DictItems(torch.utils.data.Dataset):
    """Items ({"x": image}, label), as skorch's dict inputs come per sample."""

    def __init__(self, X, y, keys=("x",)):
        self.X, self.y, self.keys = X, y, keys

    def __len__(self):
        return len(self.X)

    def __getitem__(self, i):
        return {k: self.X[i] for k in self.keys}, self.y[i]


def test_a_dataset_of_dict_items(digits):
    X, y = digits
    clf = make().fit(DictItems(X[:100], y[:100]), None)
    assert clf.predict(DictItems(X[100:110], y[100:110])).shape == (10,)
    with pytest.raises(ValueError, match=r"dict with keys \['a', 'b'\]"):
        make().fit(DictItems(X[:100], y[:100], keys=("a", "b")), None)


def test_skorch_dataset_of_a_dict_and_list_labels(digits):
    X, y = digits
    clf = make().fit(Dataset({"x": X[:100]}, y[:100]), list(y[:100]))  # y as for a split
    assert clf.predict(Dataset({"x": X[100:110]})).shape == (10,)


def test_a_net_with_a_default_checkpoint_initializes_and_loads(fitted_hw, digits, tmp_path):
    """skorch's load pattern: the same callbacks as in training, initialize, load."""
    X, y = digits
    fitted_hw.save_params(f_params=tmp_path / "params.pt")
    cb = [Checkpoint(dirname=str(tmp_path))]  # monitors valid_loss_best by default
    new = make(input_shape=(8, 8), classes=list(range(10)), callbacks=cb).initialize()
    new.load_params(f_params=tmp_path / "params.pt")
    np.testing.assert_array_equal(new.predict(X[:20]), fitted_hw.predict(X[:20]))
    with pytest.raises(ValueError, match="train_split is None"):  # training still needs it
        new.partial_fit(X[:100], y[:100])
