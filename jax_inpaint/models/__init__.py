"""The networks: StyleGAN2, LPIPS, CLIP, the ViT classifier; model folders and the shipped models."""
