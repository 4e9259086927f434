"""Everything done to an image before a backbone sees it, as one value (in
the style of timm's pretrained configs): registry entries declare it, the
features fingerprint is derived from it, and a fine-tuning run records it, so
changing any part of it can never serve features made another way."""

from dataclasses import asdict, dataclass

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bilinear", "bicubic", "nearest")


@dataclass(frozen=True)
class Preprocessing:
    size: tuple                     # (height, width) the network sees
    interpolation: str = "bicubic"
    mean: tuple = IMAGENET_MEAN
    std: tuple = IMAGENET_STD
    # "whole": the whole frame resized to `size` (aspect ratio not kept: a
    # product photo's edges carry information); "crop": shorter side resized to
    # size / crop_pct, then the centre cropped to `size`
    resize: str = "whole"
    crop_pct: float = 1.0

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS or self.resize not in ("whole", "crop"):
            raise ValueError(f"unknown interpolation or resize in {self}")

    def config(self) -> dict:
        """JSON-able and complete: what fingerprints and run configs record."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def transform(self):
        """PIL RGB image -> normalised float tensor (3, H, W)."""
        from torchvision import transforms as T  # here, not at import: ~3 s of the app's start

        mode = T.InterpolationMode(self.interpolation)
        if self.resize == "whole":
            resize = [T.Resize(self.size, interpolation=mode, antialias=True)]
        else:
            scaled = int(round(min(self.size) / self.crop_pct))
            resize = [T.Resize(scaled, interpolation=mode, antialias=True), T.CenterCrop(self.size)]
        return T.Compose([*resize, T.ToTensor(), T.Normalize(self.mean, self.std)])
