#include "train_flags.h"

namespace histoscan::cli {

void add_training_flags(CLI::App* cmd, train::TrainConfig& c) {
  cmd->add_option("--model", c.model, "network (see 'histoscan models')")->capture_default_str();
  cmd->add_option("--epochs", c.epochs, "maximum epochs")->capture_default_str();
  cmd->add_option("--batch", c.batch, "batch size")->capture_default_str();
  cmd->add_option("--lr", c.lr, "learning rate")->capture_default_str();
  cmd->add_option("--optimizer", c.optimizer, "adam (the notebook's) or sgd (with --momentum)")->capture_default_str();
  cmd->add_option("--momentum", c.momentum, "momentum of --optimizer sgd")->capture_default_str();
  cmd->add_option("--augment", c.augment,
                  "training augmentation: flips (the notebook's), dihedral (flips and 90-degree rotations), "
                  "dihedral-colour (and colour jitter), dihedral-hed (and H&E stain jitter), or steps joined by "
                  "'+': flips, dihedral, colour[=S], hed[=S], shift[=PIXELS] (e.g. dihedral+hed=0.1+shift=16)")
      ->capture_default_str();
  cmd->add_option("--seed", c.seed, "random seed of the run: its data draws, initialisation, shuffling and augmentation")
      ->capture_default_str();
  cmd->add_option("--device", c.device, "auto, cpu or cuda")->capture_default_str();
  cmd->add_option("--memory-format", c.memory_format,
                  "layout while training: auto (channels-last on a GPU and under --amp, NCHW for float32 "
                  "on the CPU), nchw or channels-last")
      ->capture_default_str();
}

}  // namespace histoscan::cli
