mod ebs;
mod cli;
