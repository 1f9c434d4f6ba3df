/** The images this repository builds, by name (without tag), and the Dockerfile that builds each one. */
export const IMAGES = {
  "astrago/trainer-agent": "Dockerfile",
  "astrago/trainer-pytorch": "images/pytorch/Dockerfile",
  "astrago/trainer-tensorflow": "images/tensorflow/Dockerfile",
} as const;
