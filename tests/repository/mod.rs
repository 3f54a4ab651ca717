mod ebs;
