"""What each model adds to the shared GAN trainer: its data preparation, forward pass, losses and
sample-grid columns. One module per model kind."""

from refcolor.train.tasks.base import Task
from refcolor.train.tasks.exemplar import ExemplarTask
from refcolor.train.tasks.guide import GuideTask
from refcolor.train.tasks.scft import SCFTTask

TASKS = {"scft": SCFTTask, "guide": GuideTask, "exemplar": ExemplarTask}


def make_task(config, device) -> Task:
    return TASKS[config.model](config, device)


__all__ = ["TASKS", "ExemplarTask", "GuideTask", "SCFTTask", "Task", "make_task"]
