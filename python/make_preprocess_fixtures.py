#!/usr/bin/env python3
"""Expected outputs of OmniDrive's image pre-processing (spec §1.2), made with the libraries the
reference uses (Pillow for the bicubic resize + crop, OpenCV for the float32 bilinear stretch),
for the C++ tests in tests/pipeline/test_preprocess.cpp.

Writes tests/data/preprocess/: small input PNGs, expected outputs (PNG for uint8 stages, raw
little-endian float32 for float stages) and manifest.json. Deterministic (seeded numpy).

    python python/make_preprocess_fixtures.py [--out tests/data/preprocess]
"""
import argparse
import json
import os

import cv2
import numpy as np
from PIL import Image

MEAN = np.array([123.675, 116.28, 103.53], dtype=np.float64)
STD = np.array([58.395, 57.12, 57.375], dtype=np.float64)


def textured(rng, w, h):
    """Smooth gradients + edges + noise: exercises negative lobes and clipping of bicubic."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = np.stack([128 + 100 * np.sin(x / 3.1 + c) * np.cos(y / 4.3 - c) for c in range(3)], -1)
    base[(x.astype(int) // 5 + y.astype(int) // 4) % 2 == 0] = [250, 5, 128]  # hard edges
    base += rng.normal(0, 25, base.shape)
    return np.clip(np.round(base), 0, 255).astype(np.uint8)


def pattern(w, h):
    """Formula image also generated in C++ (tests/pipeline/test_preprocess.cpp::pattern_pixel)."""
    y, x = np.mgrid[0:h, 0:w].astype(np.int64)
    chans = [((x * 7 + y * 13) ^ (x * y // 7)) & 255,
             ((x * 3) ^ (y * 5) ^ (x // 9 * y // 11)) & 255,
             (((x // 16 + y // 16) % 2) * 200 + (x + 2 * y) % 50) & 255]
    return np.stack(chans, -1).astype(np.uint8)


def pil_resize(img, w, h):
    return np.array(Image.fromarray(img).resize((w, h), Image.BICUBIC))


def reference_chain(img_rgb, final_h, final_w, out_h, out_w):
    """ResizeCropFlipRotImage (test) + ResizeMultiview3D + NormalizeMultiviewImage, as in the
    reference. The reference works on BGR and converts to RGB in the normalisation; we feed the
    BGR array like mmcv would, to exercise that exactly."""
    bgr = img_rgb[..., ::-1].astype(np.float32)  # mmcv.imread -> BGR float32
    H, W = bgr.shape[:2]
    resize = max(final_h / H, final_w / W)
    resize_dims = (int(W * resize), int(H * resize))
    newW, newH = resize_dims
    crop_h = int((1 - 0.0) * newH) - final_h
    crop_w = int(max(0, newW - final_w) / 2)
    crop = (crop_w, crop_h, crop_w + final_w, crop_h + final_h)
    pil = Image.fromarray(np.uint8(bgr)).resize(resize_dims).crop(crop)  # PIL default: BICUBIC
    img = np.array(pil).astype(np.float32)
    img = cv2.resize(img, (out_w, out_h), interpolation=cv2.INTER_LINEAR)  # mmcv.imresize
    # mmcv.imnormalize(to_rgb=True)
    img = img.copy().astype(np.float32)
    mean = np.float64(MEAN.reshape(1, -1))
    stdinv = 1 / np.float64(STD.reshape(1, -1))
    cv2.cvtColor(img, cv2.COLOR_BGR2RGB, img)
    cv2.subtract(img, mean, img)
    cv2.multiply(img, stdinv, img)
    return np.ascontiguousarray(img.transpose(2, 0, 1)), (resize, newW, newH, crop_w, crop_h)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "..", "tests", "data",
                                                  "preprocess"))
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = np.random.default_rng(20261129)
    manifest = {"generator": "python/make_preprocess_fixtures.py", "pillow": Image.__version__ if hasattr(Image, "__version__") else "", "opencv": cv2.__version__, "cases": []}
    import PIL
    manifest["pillow"] = PIL.__version__

    def save_png(name, arr):
        Image.fromarray(arr).save(os.path.join(args.out, name), optimize=True)

    # 1. PIL bicubic resize, uint8 -> uint8 (downscale with odd factors, upscale, one axis only).
    for i, (sw, sh, dw, dh) in enumerate([(37, 23, 15, 9), (23, 17, 41, 30), (50, 20, 50, 7),
                                          (31, 40, 12, 40)]):
        src = textured(rng, sw, sh)
        save_png(f"resize{i}_in.png", src)
        save_png(f"resize{i}_expected.png", pil_resize(src, dw, dh))
        manifest["cases"].append({"kind": "pil_resize", "input": f"resize{i}_in.png",
                                  "expected": f"resize{i}_expected.png", "out_w": dw, "out_h": dh})

    # 2. The reference size 1600x900 -> 640x360 on a formula image (no big input committed):
    # a few rows and columns of the output.
    big = pattern(1600, 900)
    out = pil_resize(big, 640, 360)
    rows = [0, 1, 2, 137, 358, 359]
    cols = [0, 1, 317, 638, 639]
    save_png("resize_full_rows.png", np.ascontiguousarray(out[rows]))
    save_png("resize_full_cols.png", np.ascontiguousarray(out[:, cols]))
    manifest["cases"].append({"kind": "pil_resize_full", "src_w": 1600, "src_h": 900, "out_w": 640,
                              "out_h": 360, "rows": rows, "cols": cols,
                              "expected_rows": "resize_full_rows.png",
                              "expected_cols": "resize_full_cols.png"})

    # 3. cv2 INTER_LINEAR on a float32 image (mmcv.imresize), x2 vertical and non-integer scales.
    for i, (sw, sh, dw, dh) in enumerate([(13, 7, 13, 14), (13, 7, 29, 19), (20, 16, 9, 5)]):
        src = textured(rng, sw, sh)
        save_png(f"linear{i}_in.png", src)
        exp = cv2.resize(src.astype(np.float32), (dw, dh), interpolation=cv2.INTER_LINEAR)
        exp.astype("<f4").tofile(os.path.join(args.out, f"linear{i}_expected.f32"))
        manifest["cases"].append({"kind": "cv2_linear", "input": f"linear{i}_in.png",
                                  "expected": f"linear{i}_expected.f32", "out_w": dw, "out_h": dh})

    # 4. The whole chain (resize, crop, stretch, normalise) for a 32x32 network input from a
    # 96x54 source (16:9 like nuScenes), and a 48x48 one from 160x90.
    for i, (sw, sh, n) in enumerate([(96, 54, 32), (160, 90, 48)]):
        src = textured(rng, sw, sh)
        save_png(f"chain{i}_in.png", src)
        exp, geo = reference_chain(src, n // 2, n, n, n)
        exp.astype("<f4").tofile(os.path.join(args.out, f"chain{i}_expected.f32"))
        manifest["cases"].append({"kind": "chain", "input": f"chain{i}_in.png",
                                  "expected": f"chain{i}_expected.f32", "net_h": n, "net_w": n,
                                  "resize": geo[0], "resized_w": geo[1], "resized_h": geo[2],
                                  "crop_x": geo[3], "crop_y": geo[4]})

    # 5. JPEG decoding: the reference decodes with OpenCV (libjpeg-turbo), omnirt with stb_image.
    # A natural-looking JPEG and OpenCV's decode of it (as RGB PNG) to measure the difference.
    y, x = np.mgrid[0:90, 0:160].astype(np.float64)
    scene = np.stack([110 + 60 * np.sin(x / 17.0) + 30 * np.cos(y / 9.0),
                      120 + 50 * np.cos(x / 23.0 + y / 31.0), 140 - 0.5 * y + 20 * np.sin(x / 5.0)], -1)
    scene[50:70, 40:90] = [200, 30, 30]  # a red "car"
    scene = np.clip(np.round(scene + rng.normal(0, 6, scene.shape)), 0, 255).astype(np.uint8)
    cv2.imwrite(os.path.join(args.out, "jpeg_in.jpg"), scene[..., ::-1],
                [cv2.IMWRITE_JPEG_QUALITY, 80])
    dec = cv2.imread(os.path.join(args.out, "jpeg_in.jpg"))[..., ::-1]
    save_png("jpeg_cv2_decoded.png", np.ascontiguousarray(dec))
    manifest["cases"].append({"kind": "jpeg", "input": "jpeg_in.jpg",
                              "cv2_decoded": "jpeg_cv2_decoded.png"})

    with open(os.path.join(args.out, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print("wrote", args.out)


if __name__ == "__main__":
    main()
