"""Robustness analysis (`jax-inpaint evaluate`), one job per module:

  metrics    masked PSNR / SSIM            baselines  classical hole fills
  records    the row schema, fingerprints  targets    the ground truth (image folders, generator samples)
  plan       cases, masks and methods      scoring    the metrics of a case's fills
  pictures   a case's picture and tiles    store      study.json and the case records (resuming)
  evaluate   runs a study                  report     CSV, plots and the HTML page (reads records / pictures)
"""
