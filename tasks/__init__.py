"""The stages of a model's life, one package each; the folder tree is the pipeline.

``core`` holds the contracts every stage and the serving service share (errors, settings,
tracking, central storage, the production pointer, the model bundle, preprocessing, image
properties, the prediction-log tables). The stage packages follow in the order a model meets
them: ``data``, ``training``, ``evaluation``, ``deployment``, ``monitoring``, ``ops``. A stage
imports ``core``, ``configs`` and the stages before it, never one after it; in each stage the
Prefect wrappers live in ``tasks.py`` and every other module is Prefect-free.
"""
