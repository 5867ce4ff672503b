"""The FID Inception: same features as pytorch-fid for the same weights; weights found or explained offline."""

import pytest
import torch

from sngan.errors import InceptionWeightsError
from sngan.metrics import inception
from sngan.metrics.inception import hub_weights_path, load_inception, resolve_weights
from tests.helpers import pytorch_fid_reference_net


def test_pytorch_fid_input_features_and_logits_equal_pytorch_fid_for_the_same_weights(inception_weights):
    path, state = inception_weights
    ours = load_inception(path, inception_input="pytorch-fid")
    reference = pytorch_fid_reference_net(state)
    images = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    features, logits = ours(images)
    with torch.no_grad():
        expected = reference(images)[0].flatten(1)
    assert features.shape == (3, 2048) and logits.shape == (3, 1008)
    assert features.std(dim=0).mean() > 1e-3  # the random network still tells images apart
    assert (features - expected).abs().max() <= 1e-5
    assert torch.allclose(logits, expected @ state["fc.weight"].T, rtol=1e-5, atol=1e-5)  # no bias, as TF's IS
    assert not ours.net.training and ours.network.startswith("custom-")


def test_offline_without_weights_names_the_file_the_url_and_where_to_put_it(offline_hub):
    with pytest.raises(InceptionWeightsError) as err:
        resolve_weights(None)
    message = str(err.value)
    assert inception.WEIGHTS_NAME in message and inception.WEIGHTS_URL in message
    assert str(offline_hub / inception.WEIGHTS_FILE) in message
    assert "\n" not in message
    assert hub_weights_path() == offline_hub / inception.WEIGHTS_FILE


def test_corrupt_cache_file_is_explained_not_loaded(offline_hub):
    offline_hub.mkdir(parents=True)
    (offline_hub / inception.WEIGHTS_FILE).write_bytes(b"\0" * 1000)
    with pytest.raises(InceptionWeightsError, match=r"corrupt or truncated \(1,000 bytes, sha256 541b3e9d"):
        resolve_weights(None)


def test_explicit_path_missing_or_not_a_state_dict(tmp_path):
    with pytest.raises(InceptionWeightsError, match="file not found"):
        resolve_weights(tmp_path / "nope.pth")
    junk = tmp_path / "junk.pth"
    junk.write_text("not a checkpoint")
    with pytest.raises(InceptionWeightsError, match="not a readable PyTorch state dict"):
        resolve_weights(junk)
    torch.save({"fc.weight": torch.zeros(10, 2048)}, tmp_path / "wrong.pth")
    with pytest.raises(InceptionWeightsError, match="not an FID Inception state dict"):
        resolve_weights(tmp_path / "wrong.pth")
