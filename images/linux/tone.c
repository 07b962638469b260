/*
 * tone: the Linux test guest's tiny ALSA player (/bin/tone in the initramfs;
 * the wav action of init.sh runs it). No alsa-lib: it drives the PCM device
 * with the kernel's own ioctls (<sound/asound.h>), as alsa-lib's hw plugin
 * does underneath, so what is tested is the stock snd_intel8x0 driver and
 * the card under it.
 *
 *   tone DEVICE HZ SECONDS
 *
 * plays a sine of HZ at 48 kHz, S16_LE stereo, for SECONDS, then drains and
 * prints one line: "tone frames=N xruns=N rate=R period=P buffer=B".
 * Built static by images::linux_guest (cc -static), cached with the
 * initramfs.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <sound/asound.h>

enum { RATE = 48000, CHANNELS = 2, PERIOD = 2048, PERIODS = 4 };

static struct snd_mask *mask(struct snd_pcm_hw_params *p, int param) {
	return &p->masks[param - SNDRV_PCM_HW_PARAM_FIRST_MASK];
}

static struct snd_interval *interval(struct snd_pcm_hw_params *p, int param) {
	return &p->intervals[param - SNDRV_PCM_HW_PARAM_FIRST_INTERVAL];
}

/* Only `bit` in the mask. */
static void mask_only(struct snd_pcm_hw_params *p, int param, unsigned bit) {
	struct snd_mask *m = mask(p, param);
	memset(m->bits, 0, sizeof(m->bits));
	m->bits[bit / 32] = 1u << (bit % 32);
}

/* Exactly `value`. */
static void interval_is(struct snd_pcm_hw_params *p, int param, unsigned value) {
	struct snd_interval *i = interval(p, param);
	i->min = i->max = value;
	i->openmin = i->openmax = 0;
	i->integer = 1;
}

/* Everything allowed, then our choices: the kernel refines the rest. */
static void hw_params_init(struct snd_pcm_hw_params *p) {
	memset(p, 0, sizeof(*p));
	for (int k = SNDRV_PCM_HW_PARAM_FIRST_MASK; k <= SNDRV_PCM_HW_PARAM_LAST_MASK; k++)
		memset(mask(p, k)->bits, 0xff, sizeof(mask(p, k)->bits));
	for (int k = SNDRV_PCM_HW_PARAM_FIRST_INTERVAL; k <= SNDRV_PCM_HW_PARAM_LAST_INTERVAL; k++) {
		interval(p, k)->min = 0;
		interval(p, k)->max = ~0u;
	}
	p->rmask = ~0u;
	p->info = ~0u;
	mask_only(p, SNDRV_PCM_HW_PARAM_ACCESS, SNDRV_PCM_ACCESS_RW_INTERLEAVED);
	mask_only(p, SNDRV_PCM_HW_PARAM_FORMAT, SNDRV_PCM_FORMAT_S16_LE);
	mask_only(p, SNDRV_PCM_HW_PARAM_SUBFORMAT, SNDRV_PCM_SUBFORMAT_STD);
	interval_is(p, SNDRV_PCM_HW_PARAM_CHANNELS, CHANNELS);
	interval_is(p, SNDRV_PCM_HW_PARAM_RATE, RATE);
	interval_is(p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE, PERIOD);
	interval_is(p, SNDRV_PCM_HW_PARAM_PERIODS, PERIODS);
}

int main(int argc, char **argv) {
	if (argc != 4) {
		fprintf(stderr, "usage: tone DEVICE HZ SECONDS\n");
		return 2;
	}
	double hz = atof(argv[2]);
	long total = atol(argv[3]) * RATE;
	int fd = open(argv[1], O_WRONLY);
	if (fd < 0) {
		printf("tone error=open:%s\n", strerror(errno));
		return 1;
	}
	struct snd_pcm_hw_params p;
	hw_params_init(&p);
	if (ioctl(fd, SNDRV_PCM_IOCTL_HW_PARAMS, &p) < 0) {
		printf("tone error=hw_params:%s\n", strerror(errno));
		return 1;
	}
	if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) < 0) {
		printf("tone error=prepare:%s\n", strerror(errno));
		return 1;
	}
	static short buf[PERIOD * CHANNELS];
	long written = 0, xruns = 0;
	while (written < total) {
		for (int f = 0; f < PERIOD; f++) {
			double t = (double)(written + f) / RATE;
			short s = (short)(12000.0 * sin(2.0 * M_PI * hz * t));
			buf[2 * f] = buf[2 * f + 1] = s;
		}
		struct snd_xferi x = { .buf = buf, .frames = PERIOD };
		if (ioctl(fd, SNDRV_PCM_IOCTL_WRITEI_FRAMES, &x) < 0) {
			if (errno != EPIPE) {
				printf("tone error=write:%s\n", strerror(errno));
				return 1;
			}
			/* An underrun (the emulated kernel was late): start again. */
			xruns++;
			if (ioctl(fd, SNDRV_PCM_IOCTL_PREPARE) < 0) {
				printf("tone error=prepare:%s\n", strerror(errno));
				return 1;
			}
			continue;
		}
		written += x.result;
	}
	ioctl(fd, SNDRV_PCM_IOCTL_DRAIN);
	printf("tone frames=%ld xruns=%ld rate=%u period=%u buffer=%u\n", written, xruns,
	       interval(&p, SNDRV_PCM_HW_PARAM_RATE)->min,
	       interval(&p, SNDRV_PCM_HW_PARAM_PERIOD_SIZE)->min,
	       interval(&p, SNDRV_PCM_HW_PARAM_BUFFER_SIZE)->min);
	close(fd);
	return 0;
}
