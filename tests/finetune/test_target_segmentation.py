from tests.finetune.target_base import TargetTest


class TestSegmentation(TargetTest):
    name = "segmentation"
