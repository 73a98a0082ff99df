"""Images: digits, MNIST, Fashion-MNIST, CIFAR-10 and image folders; DC-GAN and PCA drafts;
FID, KID, IS and precision/recall through torch-fidelity, offline."""
