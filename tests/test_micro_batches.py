"""train.micro_batched: a step's gradient over parts of the batch, against the whole batch in float64."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxnerf.run import train

N = 24


def least_squares(params, views, batch, key, skip):
  """((loss, terms), grads) of the mean squared error of a linear model; terms has an integer count."""
  def loss_fn(w, views):
    error = batch["x"] @ w - batch["y"]
    loss = jnp.mean(error ** 2)
    return loss, {"mse": loss, "positive": jnp.sum(batch["y"] > 0).astype(jnp.int32)}

  return jax.value_and_grad(loss_fn, argnums=(0, 1), has_aux=True)(params, views)


def batch_of(seed):
  rng = np.random.default_rng(seed)
  return {"x": rng.normal(size=(N, 3)).astype(np.float32), "y": rng.normal(size=(N,)).astype(np.float32)}


@pytest.mark.parametrize("micro_batches", [2, 4])
def test_micro_batches_give_the_whole_batch_mean(micro_batches):
  batch, w = batch_of(0), np.array([0.3, -1.2, 0.7], np.float32)
  (loss, terms), (grad, view_grad) = jax.jit(train.micro_batched(least_squares, micro_batches, lambda t: t))(
      w, jnp.zeros(2), batch, jax.random.key(0), None)
  x, y = batch["x"].astype(np.float64), batch["y"].astype(np.float64)
  error = x @ w.astype(np.float64) - y
  np.testing.assert_allclose(loss, np.mean(error ** 2), rtol=1e-5)
  np.testing.assert_allclose(terms["mse"], np.mean(error ** 2), rtol=1e-5)
  np.testing.assert_allclose(grad, 2.0 / N * x.T @ error, rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(view_grad, np.zeros(2))
  assert terms["positive"].dtype == jnp.int32 and int(terms["positive"]) == int(np.sum(y > 0))  # counts add up


def test_part_i_takes_every_mth_ray_and_its_own_key():
  micro_batches, key = 3, jax.random.key(7)

  def keyed(params, views, batch, key, skip):
    loss = jnp.sum(batch["x"][:, 0] ** 2 * jnp.arange(1, batch["x"].shape[0] + 1)) * jax.random.uniform(key)
    return (loss, {}), (jnp.zeros(()), None)

  (loss, _), _ = train.micro_batched(keyed, micro_batches, lambda t: t)(0.0, None, batch_of(1), key, None)
  x = batch_of(1)["x"][:, 0].astype(np.float64) ** 2
  expected = np.mean([np.sum(x[i::micro_batches] * np.arange(1, N // micro_batches + 1)) *
                      float(jax.random.uniform(jax.random.fold_in(key, i))) for i in range(micro_batches)])
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_one_micro_batch_is_the_function_itself():
  assert train.micro_batched(least_squares, 1, lambda t: t) is least_squares


def test_fast_model_trains_in_micro_batches_with_view_corrections(tmp_path):
  """The fast model (compacted samples in training), pose refinement and appearance codes, in 2 parts a step."""
  from test_train_eval import tiny_fast_config
  config = tiny_fast_config(4)
  config.train.micro_batches = 2
  config.views.refine_poses, config.views.embedding_dim = True, 4
  config.train.val_every = 0
  state = train.train_and_evaluate(config, str(tmp_path / "run"))
  assert int(state.step) == 4 and int(state.nonfinite_total) == 0
  assert np.abs(np.asarray(jax.tree.leaves(state.params["appearance"])[0])).max() > 0  # the codes were trained
  assert np.abs(np.asarray(jax.tree.leaves(state.views)[0])).max() > 0  # and the poses moved


def test_micro_batches_must_divide_each_devices_rays():
  from configs import demo
  from jaxnerf import config as config_lib
  from jaxnerf.errors import ConfigError
  config = demo.get_config()
  config.train.batch_size, config.train.micro_batches = 256, 3
  with pytest.raises(ConfigError, match=r"train.micro_batches.*128 rays per device"):
    config_lib.validate(config, 2)
  config.train.micro_batches = 4
  config_lib.validate(config, 2)
