"""Image quality: PSNR, SSIM and LPIPS."""
