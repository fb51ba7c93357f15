from tests.finetune.target_base import TargetTest


class TestClassification(TargetTest):
    name = "classification"
