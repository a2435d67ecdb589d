"""PyTorch side of the MobileNet V1 comparison: torchvision has no V1, so this times the reference's
architecture as Scripts/make_fixtures.py writes it out, the way Scripts/bench_pytorch.py model times
torchvision models (training step with SGD and label smoothing, then no-grad evaluation).

    python3 Scripts/bench_pytorch_mobilenet_v1.py
"""
import importlib.util, os, statistics, time, torch
spec = importlib.util.spec_from_file_location("mf", os.path.join(os.path.dirname(os.path.abspath(__file__)), "make_fixtures.py"))
m = importlib.util.module_from_spec(spec)
spec.loader.exec_module(m)
torch.set_num_threads(2); torch.manual_seed(0)
model=m.MobileNetV1(1000); bs=32
x=torch.randn(bs,3,224,224); y=torch.randint(0,1000,(bs,))
loss_fn=torch.nn.CrossEntropyLoss(label_smoothing=0.1); opt=torch.optim.SGD(model.parameters(),lr=0.1,momentum=0.9,weight_decay=1e-4)
def step():
    opt.zero_grad(set_to_none=True); loss_fn(model(x),y).backward(); opt.step()
def timed(fn):
    fn(); ts=[]
    for _ in range(5):
        t=time.perf_counter(); fn(); ts.append(time.perf_counter()-t)
    return statistics.median(ts)
model.train(); tr=timed(step); model.eval()
with torch.no_grad(): ev=timed(lambda: model(x))
print(f"mobilenet_v1 (reference definition) batch={bs} torch train_img_s={bs/tr:.2f} eval_img_s={bs/ev:.2f}")
