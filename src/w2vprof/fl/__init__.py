"""Federated pretraining on Flower (optional extra `w2vprof[fl]`)."""
