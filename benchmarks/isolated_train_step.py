"""One implementation per fresh process: MLP [784,256,128,10] + Adam + CE train step, samples/s (median of 7)."""
import sys, time
impl, th, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
import numpy as np
rng = np.random.default_rng(0)
X = rng.random((batch, 784), dtype=np.float32); y = rng.integers(0, 10, batch)
if impl == "nnk":
    import nnkernels as nk
    from nnkernels import nn, optim
    nk.set_num_threads(th)
    m = nn.MLP([784, 256, 128, 10]); o = optim.Adam(m.parameters(), lr=1e-3); lf = nn.CrossEntropyLoss()
    step = lambda: m.train_step(X, y, lf, o)
elif impl == "torch":
    import torch
    torch.set_num_threads(th)
    m = torch.nn.Sequential(torch.nn.Linear(784,256), torch.nn.ReLU(), torch.nn.Linear(256,128), torch.nn.ReLU(), torch.nn.Linear(128,10))
    o = torch.optim.Adam(m.parameters(), lr=1e-3); tx = torch.from_numpy(X); ty = torch.from_numpy(y)
    def step():
        o.zero_grad(); l = torch.nn.functional.cross_entropy(m(tx), ty); l.backward(); o.step()
elif impl == "jax":
    import jax, jax.numpy as jnp
    def init(k, i, o_):
        return (jax.random.uniform(k, (i, o_), minval=-1/np.sqrt(i), maxval=1/np.sqrt(i)), jnp.zeros(o_))
    ks = jax.random.split(jax.random.PRNGKey(0), 3)
    params = [init(ks[0],784,256), init(ks[1],256,128), init(ks[2],128,10)]
    def loss(p, x, y):
        h = x
        for i, (w, b) in enumerate(p):
            h = h @ w + b
            if i < 2: h = jax.nn.relu(h)
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(h), y[:, None], 1))
    state = [params, jax.tree_util.tree_map(jnp.zeros_like, params), jax.tree_util.tree_map(jnp.zeros_like, params), 0]
    @jax.jit
    def upd(p, m_, v_, t, x, y):
        g = jax.grad(loss)(p, x, y); t = t + 1
        m_ = jax.tree_util.tree_map(lambda a, b: 0.9*a + 0.1*b, m_, g)
        v_ = jax.tree_util.tree_map(lambda a, b: 0.999*a + 0.001*b*b, v_, g)
        p = jax.tree_util.tree_map(lambda w, a, b: w - 1e-3*(a/(1-0.9**t))/(jnp.sqrt(b/(1-0.999**t))+1e-8), p, m_, v_)
        return p, m_, v_, t
    jx, jy = jnp.asarray(X), jnp.asarray(y)
    def step():
        state[:] = upd(state[0], state[1], state[2], state[3], jx, jy)
        jax.block_until_ready(state[0])
for _ in range(30): step()
rates = []
for _ in range(7):
    n = 0; t = time.perf_counter()
    while time.perf_counter() - t < 0.4: step(); n += 1
    rates.append(n * batch / (time.perf_counter() - t))
print(f"{impl:5s} threads={th} batch={batch:5d} {np.median(rates):10.0f} samples/s")
