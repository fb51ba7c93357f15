from tests.pretext.base import TaskTest


class TestSimCLR(TaskTest):
    task_name = "simclr"
    init = "imagenet"
    steps = 30
    settings = {"hidden_dim": 128, "projection_dim": 32}
