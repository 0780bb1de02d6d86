"""Using a trained model elsewhere: export (ONNX, TorchScript, torch.export) and prediction."""
