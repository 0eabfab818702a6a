"""Using a trained model: the model file read for prediction, the predictor (`lionfer.load`), its
output file, videos read and annotated frame by frame, export to ONNX or TorchScript, and the audit
of a dataset's labels. Nothing here trains; the training loop never imports it.
"""
