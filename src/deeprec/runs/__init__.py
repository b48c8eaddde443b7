"""The run-directory application: train, resume and load models from a run folder.

It sits above the estimator (it builds `DeepRec`, `Ensemble` and `load_model`), so `train/`
below it keeps only the loop, config, checkpoints and distributed training.
``training``: train/resume/select a run; ``directory``: the folder's files and event log.
"""
