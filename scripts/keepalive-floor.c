// The floor of an etcd keepalive on this machine: a minimal HTTP/2 gRPC LeaseKeepAlive client in
// C, for comparison with tether's wrapper (README, "Performance", etcd rows). No TLS, no auth.
//
//   gcc -O2 -o /tmp/keepalive-floor scripts/keepalive-floor.c
//   /tmp/keepalive-floor PORT LEASE_HEX MODE INTERVAL_MS
//
// LEASE_HEX from `ETCDCTL_API=3 etcdctl --endpoints 127.0.0.1:PORT lease grant 600`. MODE 2 does
// what tether's direct keepalive does (store/etcd/direct.rs): each tick reads whatever etcd sent
// without waiting, then writes the pongs and the next keepalive in one write, on ticks aligned as
// tether's are. MODE 1 waits for each answer and acknowledges etcd's PING at once, as a client
// stack does; MODE 0 waits for each answer and never acknowledges a PING (not a valid client: for
// comparison only). Read its CPU from /proc/PID/schedstat (ns, first field) over a window and
// divide by the ticks in it. The bench builds and runs it beside the wrapper (benches/support/etcd.rs).
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <stdint.h>
#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <time.h>
#include <poll.h>
#include <sys/timerfd.h>
#include <fcntl.h>
#include <errno.h>
static int fd;
static void frame(unsigned char *b, int len, int type, int flags, int sid){
  b[0]=len>>16;b[1]=len>>8;b[2]=len;b[3]=type;b[4]=flags;b[5]=sid>>24;b[6]=sid>>16;b[7]=sid>>8;b[8]=sid;}
static int hdr(unsigned char *p,const char*n,const char*v){int i=0;p[i++]=0;int nl=strlen(n),vl=strlen(v);p[i++]=nl;memcpy(p+i,n,nl);i+=nl;p[i++]=vl;memcpy(p+i,v,vl);i+=vl;return i;}
static unsigned char rb[65536]; static int rl=0;
// How a tick's sleep is taken, by SLEEP in the environment: unset, `clock_nanosleep`; `timerfd`,
// `ppoll` on a periodic timerfd (armed once, aligned) and 4 pipes, then the timerfd's read, as
// tether's idle wait does (wrapper/idle.rs); `timeout`, `ppoll` on the 4 pipes with a timeout
// to the next aligned tick. For comparing the wake-ups alone.
static void sleep_until(const struct timespec *at, long long step){
  static const char *how; static int tfd=-1, q[4][2], init=0;
  if(!init){ init=1; how=getenv("SLEEP"); if(!how) how="";
    for(int j=0;j<4;j++) if(pipe(q[j])) exit(1);
    if(!strcmp(how,"timerfd")){ tfd=timerfd_create(CLOCK_MONOTONIC,TFD_CLOEXEC);
      struct itimerspec its={{step/1000000000LL, step%1000000000LL},*at};
      timerfd_settime(tfd,TFD_TIMER_ABSTIME,&its,NULL); } }
  struct pollfd pf[5]={{q[0][0],POLLIN,0},{q[1][0],POLLIN,0},{q[2][0],POLLIN,0},{q[3][0],POLLIN,0},{tfd,POLLIN,0}};
  if(tfd>=0){ unsigned long long x; ppoll(pf,5,NULL,NULL); if(read(tfd,&x,8)<0) exit(1); return; }
  if(!strcmp(how,"timeout")){ struct timespec n; clock_gettime(CLOCK_MONOTONIC,&n);
    long long rel=(at->tv_sec-n.tv_sec)*1000000000LL+(at->tv_nsec-n.tv_nsec); if(rel<0) rel=0;
    struct timespec ts={rel/1000000000LL, rel%1000000000LL}; ppoll(pf,4,&ts,NULL); return; }
  clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, at, NULL);
}
// read frames until a DATA on stream 1; ack pings if ack
static int pump(int ack){
  for(;;){
    while(rl>=9){int len=(rb[0]<<16)|(rb[1]<<8)|rb[2]; if(rl<9+len)break; int type=rb[3],flags=rb[4];
      int got=0;
      if(type==6 && !(flags&1) && ack){unsigned char a[17];frame(a,8,6,1,0);memcpy(a+9,rb+9,8);write(fd,a,17);}
      if(type==4 && !(flags&1)){unsigned char a[9];frame(a,0,4,1,0);write(fd,a,9);}
      if(type==0 && len>0) got=1;
      if(type==7){fprintf(stderr,"GOAWAY\n");exit(1);}
      memmove(rb,rb+9+len,rl-9-len); rl-=9+len; if(got) return 1;}
    int n=read(fd,rb+rl,sizeof rb-rl); if(n<=0){perror("read");exit(1);} rl+=n;
  }
}
int main(int argc,char**argv){
  int port=atoi(argv[1]); long long lease=strtoll(argv[2],0,16); int ack=atoi(argv[3]); int iv=atoi(argv[4]);
  fd=socket(AF_INET,SOCK_STREAM,0); int one=1; setsockopt(fd,IPPROTO_TCP,TCP_NODELAY,&one,4);
  struct sockaddr_in a={.sin_family=AF_INET,.sin_port=htons(port)}; a.sin_addr.s_addr=htonl(0x7f000001);
  if(connect(fd,(void*)&a,sizeof a)){perror("connect");return 1;}
  unsigned char b[1024]; int i=0;
  memcpy(b,"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",24); i=24; frame(b+i,0,4,0,0); i+=9;
  unsigned char h[512]; int hl=0; char auth[64]; sprintf(auth,"127.0.0.1:%d",port);
  hl+=hdr(h+hl,":method","POST");hl+=hdr(h+hl,":scheme","http");hl+=hdr(h+hl,":path","/etcdserverpb.Lease/LeaseKeepAlive");
  hl+=hdr(h+hl,":authority",auth);hl+=hdr(h+hl,"content-type","application/grpc");hl+=hdr(h+hl,"te","trailers");
  frame(b+i,hl,1,4,1); i+=9; memcpy(b+i,h,hl); i+=hl; write(fd,b,i);
  unsigned char m[64]; int ml=0; m[ml++]=0x08; unsigned long long v=lease; while(v>=0x80){m[ml++]=(v&0x7f)|0x80;v>>=7;} m[ml++]=v;
  unsigned char d[64]; frame(d,5+ml,0,0,1); d[9]=0; d[10]=0;d[11]=0;d[12]=0;d[13]=ml; memcpy(d+14,m,ml);
  if(ack==2){ write(fd,d,14+ml); pump(1); fcntl(fd,F_SETFL,O_NONBLOCK); long answers=0;
    for(int k=0;;k++){
      // Ticks on whole multiples of the interval on the monotonic clock, as tether's are.
      struct timespec now; clock_gettime(CLOCK_MONOTONIC,&now);
      long long step=iv*1000000LL, ns=now.tv_sec*1000000000LL+now.tv_nsec, next=(ns/step+1)*step;
      struct timespec at={next/1000000000LL, next%1000000000LL};
      sleep_until(&at, step);
      for(;;){int n=read(fd,rb+rl,sizeof rb-rl); if(n<=0)break; rl+=n;}
      unsigned char out[256]; int ol=0;
      while(rl>=9){int len=(rb[0]<<16)|(rb[1]<<8)|rb[2]; if(rl<9+len)break; int type=rb[3],flags=rb[4];
        if(type==6 && !(flags&1)){frame(out+ol,8,6,1,0);memcpy(out+ol+9,rb+9,8);ol+=17;}
        if(type==0&&len>0)answers++;
        memmove(rb,rb+9+len,rl-9-len); rl-=9+len;}
      memcpy(out+ol,d,14+ml); ol+=14+ml; write(fd,out,ol);
      if(k%10==9) fprintf(stderr,"answers %ld after %d\n",answers,k+1);
    }}
  for(int k=0;;k++){ write(fd,d,14+ml); pump(ack); if(k==0) fprintf(stderr,"first answer ok\n"); usleep(iv*1000); }
}
